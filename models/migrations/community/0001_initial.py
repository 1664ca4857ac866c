from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from models.community import Language, MemberStatus, Role
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='AuditEntry',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('actor_id', fields.IntField(null=True)),
                ('actor_role', fields.CharField(max_length=16)),
                ('action', fields.CharField(max_length=64)),
                ('target_member_id', fields.IntField(null=True)),
                ('reason', fields.TextField(default='', unique=False)),
                ('details', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
            ],
            options={'table': 'audit_entry', 'app': 'community', 'pk_attr': 'id', 'table_description': 'Append-only record of staff actions: who, what, whom, why, when.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='LoginThrottle',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('key', fields.CharField(unique=True, max_length=64)),
                ('failures', fields.IntField(default=0)),
                ('window_started_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'login_throttle', 'app': 'community', 'pk_attr': 'id', 'table_description': 'Failed sign-in counter for one keyed hash of an account or an address.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Member',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('login_name', fields.CharField(null=True, max_length=32)),
                ('login_key', fields.CharField(null=True, unique=True, max_length=32)),
                ('display_name', fields.CharField(null=True, max_length=32)),
                ('display_key', fields.CharField(null=True, unique=True, max_length=32)),
                ('password_hash', fields.CharField(null=True, max_length=255)),
                ('role', fields.CharEnumField(default=Role.MEMBER, description='MEMBER: member\nMODERATOR: moderator\nRESEARCHER: researcher\nADMIN: admin', enum_type=Role, max_length=16)),
                ('status', fields.CharEnumField(default=MemberStatus.PENDING, description='PENDING: pending\nACTIVE: active\nRESIGNED: resigned', enum_type=MemberStatus, max_length=16)),
                ('language', fields.CharEnumField(default=Language.FI, description='FI: fi\nSV: sv\nEN: en', enum_type=Language, max_length=2)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('activated_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_active_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('password_changed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('ended_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'member', 'app': 'community', 'pk_attr': 'id', 'table_description': 'A pseudonymous identity: a member, or a staff account.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='NameHistory',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('member', fields.ForeignKeyField('community.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='name_history', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharField(max_length=16)),
                ('old_value', fields.CharField(max_length=32)),
                ('changed_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'name_history', 'app': 'community', 'pk_attr': 'id', 'table_description': 'Earlier login and display names, kept for moderators, erased on resignation.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Notification',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('member', fields.ForeignKeyField('community.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='notifications', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharField(max_length=32)),
                ('params', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('read_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'notification', 'app': 'community', 'indexes': [Index(fields=['member_id', 'id'])], 'pk_attr': 'id', 'table_description': 'A personal notice for one member. Its id is its stream position.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='RulesVersion',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('version', fields.IntField(unique=True)),
                ('text_fi', fields.TextField(unique=False)),
                ('text_sv', fields.TextField(unique=False)),
                ('text_en', fields.TextField(unique=False)),
                ('published_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('published_by_id', fields.IntField(null=True)),
            ],
            options={'table': 'rules_version', 'app': 'community', 'pk_attr': 'id', 'table_description': 'One published version of the community rules, in three languages.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='RulesAcceptance',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('member', fields.ForeignKeyField('community.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='acceptances', on_delete=OnDelete.CASCADE)),
                ('rules', fields.ForeignKeyField('community.RulesVersion', source_field='rules_id', db_constraint=True, to_field='id', related_name='acceptances', on_delete=OnDelete.RESTRICT)),
                ('accepted_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'rules_acceptance', 'app': 'community', 'unique_together': (('member', 'rules'),), 'pk_attr': 'id', 'table_description': "A member's acceptance of one rules version (the history is kept)."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Session',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('member', fields.ForeignKeyField('community.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='sessions', on_delete=OnDelete.CASCADE)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('last_seen_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'session', 'app': 'community', 'pk_attr': 'id', 'table_description': 'A signed-in device. Only the SHA-256 of the opaque token is stored.'},
            bases=['Model'],
        ),
    ]
