from tortoise import migrations
from models.migration_ops import AlterFieldStateOnly
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from models.community import MemberStatus
from models.moderation import CheckAction, ModerationEventKind, SanctionKind, WordListKind
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('community', '0004_notification_positions')]

    initial = False

    operations = [
        ops.CreateModel(
            name='CheckDecision',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('member', fields.ForeignKeyField('community.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='check_decisions', on_delete=OnDelete.CASCADE)),
                ('post', fields.ForeignKeyField('community.Post', source_field='post_id', null=True, db_constraint=True, to_field='id', related_name='check_decisions', on_delete=OnDelete.CASCADE)),
                ('check', fields.CharField(max_length=32)),
                ('action', fields.CharEnumField(description='REFUSE: refuse\nHOLD: hold', enum_type=CheckAction, max_length=16)),
                ('detail', fields.CharField(default='', max_length=64)),
                ('on_edit', fields.BooleanField(default=False)),
            ],
            options={'table': 'check_decision', 'app': 'community', 'indexes': [Index(fields=['member_id', 'at'])], 'pk_attr': 'id', 'table_description': "An automatic check's decision on a new or edited post: which check, what it did, why."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='MemberSanction',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('member', fields.ForeignKeyField('community.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='sanctions', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharEnumField(description='WARN: warn\nSUSPEND: suspend\nPREMODERATE: premoderate\nBAN: ban', enum_type=SanctionKind, max_length=16)),
                ('category', fields.CharField(null=True, max_length=32)),
                ('note', fields.TextField(default='', unique=False)),
                ('created_by_id', fields.IntField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('acknowledged_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('lifted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('lifted_by_id', fields.IntField(null=True)),
            ],
            options={'table': 'member_sanction', 'app': 'community', 'indexes': [Index(fields=['member_id', 'kind'])], 'pk_attr': 'id', 'table_description': "A moderator's action on a member. Warnings wait for the member's acknowledgement."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ModerationCounter',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('last_position', fields.IntField(default=0)),
            ],
            options={'table': 'moderation_counter', 'app': 'community', 'pk_attr': 'id', 'table_description': 'The last moderation feed position handed out (one row, id 1).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ModerationEvent',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('position', fields.IntField(unique=True)),
                ('kind', fields.CharEnumField(description='POST_ADDED: post_added\nPOST_EDITED: post_edited\nPOST_HELD: post_held\nREPORT: report\nPOST_DECISION: post_decision\nTHREAD_ACTION: thread_action\nMEMBER_ACTION: member_action', enum_type=ModerationEventKind, max_length=32)),
                ('post', fields.ForeignKeyField('community.Post', source_field='post_id', null=True, db_constraint=True, to_field='id', related_name='moderation_events', on_delete=OnDelete.CASCADE)),
                ('thread', fields.ForeignKeyField('community.Thread', source_field='thread_id', null=True, db_constraint=True, to_field='id', related_name='moderation_events', on_delete=OnDelete.CASCADE)),
                ('member_id', fields.IntField(null=True)),
                ('actor_id', fields.IntField(null=True)),
                ('details', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'moderation_event', 'app': 'community', 'pk_attr': 'id', 'table_description': "One entry of the moderators' live feed, at a gap-free position."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ModerationWord',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('kind', fields.CharEnumField(description='BANNED: banned\nSUSPECT: suspect', enum_type=WordListKind, max_length=16)),
                ('phrase', fields.CharField(max_length=100)),
                ('language', fields.CharField(default='any', max_length=3)),
                ('created_by_id', fields.IntField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'moderation_word', 'app': 'community', 'unique_together': (('kind', 'phrase'),), 'pk_attr': 'id', 'table_description': "A word or phrase on a moderators' list, stored normalised (see resolvers.postchecks)."},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Area',
            name='premoderated',
            field=fields.BooleanField(default=False, db_default=False),
        ),
        AlterFieldStateOnly(
            model_name='Member',
            name='status',
            field=fields.CharEnumField(default=MemberStatus.PENDING, description='PENDING: pending\nACTIVE: active\nRESIGNED: resigned\nBANNED: banned', enum_type=MemberStatus, max_length=16),
        ),
        ops.AddField(
            model_name='Member',
            name='premoderated',
            field=fields.BooleanField(default=False, db_default=False),
        ),
        ops.AddField(
            model_name='Member',
            name='suspended_until',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Thread',
            name='held',
            field=fields.BooleanField(default=False, db_default=False),
        ),
        ops.AddField(
            model_name='Thread',
            name='locked_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Thread',
            name='pinned_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
    ]
