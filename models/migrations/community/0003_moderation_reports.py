from tortoise import migrations
from models.migration_ops import AlterFieldStateOnly
from tortoise.migrations import operations as ops
from models.discussions import EventKind, PostStatus
from models.moderation import ReportCategory
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('community', '0002_discussions')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Report',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('post', fields.ForeignKeyField('community.Post', source_field='post_id', db_constraint=True, to_field='id', related_name='reports', on_delete=OnDelete.CASCADE)),
                ('reporter', fields.ForeignKeyField('community.Member', source_field='reporter_id', db_constraint=True, to_field='id', related_name='reports_filed', on_delete=OnDelete.CASCADE)),
                ('category', fields.CharEnumField(description='MISINFORMATION: misinformation\nSPAM_OR_TROLLING: spam_or_trolling\nSELLING: selling\nPERSONAL_ATTACK: personal_attack\nILLEGAL_ACTIVITY: illegal_activity\nOFFENSIVE: offensive\nPERSONAL_DATA: personal_data\nOTHER: other', enum_type=ReportCategory, max_length=32)),
                ('note', fields.TextField(default='', unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('settled_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'report', 'app': 'community', 'unique_together': (('post', 'reporter'),), 'indexes': [Index(fields=['reporter_id', 'created_at'])], 'pk_attr': 'id', 'table_description': "One member's report of one post."},
            bases=['Model'],
        ),
        AlterFieldStateOnly(
            model_name='Post',
            name='status',
            field=fields.CharEnumField(default=PostStatus.VISIBLE, description='VISIBLE: visible\nREMOVED: removed\nHELD: held\nMODERATED: moderated', enum_type=PostStatus, max_length=16),
        ),
        ops.AddField(
            model_name='Post',
            name='decided_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Post',
            name='decided_by_id',
            field=fields.IntField(null=True),
        ),
        ops.AddField(
            model_name='Post',
            name='decision',
            field=fields.CharField(null=True, max_length=16),
        ),
        ops.AddField(
            model_name='Post',
            name='decision_category',
            field=fields.CharField(null=True, max_length=32),
        ),
        ops.AddField(
            model_name='Post',
            name='held_reason',
            field=fields.CharField(null=True, max_length=32),
        ),
        ops.AddField(
            model_name='Post',
            name='reviewed_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        AlterFieldStateOnly(
            model_name='ThreadEvent',
            name='kind',
            field=fields.CharEnumField(description='POST_ADDED: post_added\nPOST_EDITED: post_edited\nPOST_REMOVED: post_removed\nREACTIONS_CHANGED: reactions_changed\nPOST_HIDDEN: post_hidden\nPOST_RESTORED: post_restored', enum_type=EventKind, max_length=32),
        ),
    ]
