from tortoise import migrations
from tortoise.migrations import operations as ops
from models.discussions import EventKind, PostStatus, ReactionKind
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('community', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='MemberGroup',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(unique=True, max_length=100)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('created_by_id', fields.IntField(null=True)),
            ],
            options={'table': 'member_group', 'app': 'community', 'pk_attr': 'id', 'table_description': 'A named set of members: restricts discussion areas, and targets studies.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Area',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('title_fi', fields.CharField(max_length=200)),
                ('title_sv', fields.CharField(max_length=200)),
                ('title_en', fields.CharField(max_length=200)),
                ('description_fi', fields.TextField(default='', unique=False)),
                ('description_sv', fields.TextField(default='', unique=False)),
                ('description_en', fields.TextField(default='', unique=False)),
                ('group', fields.ForeignKeyField('community.MemberGroup', source_field='group_id', null=True, db_constraint=True, to_field='id', related_name='areas', on_delete=OnDelete.RESTRICT)),
                ('members_can_start_threads', fields.BooleanField(default=False)),
                ('created_by_id', fields.IntField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'area', 'app': 'community', 'pk_attr': 'id', 'table_description': 'A discussion area, created by staff, open to all or to one member group.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='GroupMembership',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('group', fields.ForeignKeyField('community.MemberGroup', source_field='group_id', db_constraint=True, to_field='id', related_name='memberships', on_delete=OnDelete.CASCADE)),
                ('member', fields.ForeignKeyField('community.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='group_memberships', on_delete=OnDelete.CASCADE)),
                ('added_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'group_membership', 'app': 'community', 'unique_together': (('group', 'member'),), 'pk_attr': 'id', 'table_description': 'One member in one group.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Thread',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('area', fields.ForeignKeyField('community.Area', source_field='area_id', db_constraint=True, to_field='id', related_name='threads', on_delete=OnDelete.RESTRICT)),
                ('title', fields.CharField(max_length=200)),
                ('started_by', fields.ForeignKeyField('community.Member', source_field='started_by_id', db_constraint=True, to_field='id', related_name='threads_started', on_delete=OnDelete.RESTRICT)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('last_position', fields.IntField(default=0)),
                ('last_activity_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('post_count', fields.IntField(default=0)),
            ],
            options={'table': 'thread', 'app': 'community', 'pk_attr': 'id', 'table_description': "A thread in an area. ``last_position`` is its newest event's position."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Post',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('thread', fields.ForeignKeyField('community.Thread', source_field='thread_id', db_constraint=True, to_field='id', related_name='posts', on_delete=OnDelete.RESTRICT)),
                ('author', fields.ForeignKeyField('community.Member', source_field='author_id', db_constraint=True, to_field='id', related_name='posts', on_delete=OnDelete.RESTRICT)),
                ('parent', fields.ForeignKeyField('community.Post', source_field='parent_id', null=True, db_constraint=True, to_field='id', related_name='replies', on_delete=OnDelete.RESTRICT)),
                ('depth', fields.IntField(default=0)),
                ('body', fields.TextField(unique=False)),
                ('status', fields.CharEnumField(default=PostStatus.VISIBLE, description='VISIBLE: visible\nREMOVED: removed', enum_type=PostStatus, max_length=16)),
                ('client_key', fields.CharField(max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('edited_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('removed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'post', 'app': 'community', 'unique_together': (('author', 'client_key'),), 'indexes': [Index(fields=['thread_id', 'id']), Index(fields=['author_id', 'created_at'])], 'pk_attr': 'id', 'table_description': 'A post or a reply (``parent`` set, ``depth`` > 0).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PostEdit',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('post', fields.ForeignKeyField('community.Post', source_field='post_id', db_constraint=True, to_field='id', related_name='edits', on_delete=OnDelete.CASCADE)),
                ('old_body', fields.TextField(unique=False)),
                ('edited_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'post_edit', 'app': 'community', 'pk_attr': 'id', 'table_description': 'The text a post had before an edit (kept for moderators).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Reaction',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('post', fields.ForeignKeyField('community.Post', source_field='post_id', db_constraint=True, to_field='id', related_name='reactions', on_delete=OnDelete.CASCADE)),
                ('member', fields.ForeignKeyField('community.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='reactions', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharEnumField(description='LIKE: like\nHEART: heart\nHELPFUL: helpful\nLAUGH: laugh\nSAD: sad', enum_type=ReactionKind, max_length=16)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'reaction', 'app': 'community', 'unique_together': (('post', 'member', 'kind'),), 'pk_attr': 'id', 'table_description': "One member's reaction of one kind to one post."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ReadPosition',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('member', fields.ForeignKeyField('community.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='read_positions', on_delete=OnDelete.CASCADE)),
                ('thread', fields.ForeignKeyField('community.Thread', source_field='thread_id', db_constraint=True, to_field='id', related_name='read_positions', on_delete=OnDelete.CASCADE)),
                ('position', fields.IntField(default=0)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'read_position', 'app': 'community', 'unique_together': (('member', 'thread'),), 'pk_attr': 'id', 'table_description': 'How far a member has read a thread (a thread event position).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ThreadEvent',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('thread', fields.ForeignKeyField('community.Thread', source_field='thread_id', db_constraint=True, to_field='id', related_name='events', on_delete=OnDelete.RESTRICT)),
                ('position', fields.IntField()),
                ('kind', fields.CharEnumField(description='POST_ADDED: post_added\nPOST_EDITED: post_edited\nPOST_REMOVED: post_removed\nREACTIONS_CHANGED: reactions_changed', enum_type=EventKind, max_length=32)),
                ('post', fields.ForeignKeyField('community.Post', source_field='post_id', db_constraint=True, to_field='id', related_name='events', on_delete=OnDelete.RESTRICT)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'thread_event', 'app': 'community', 'unique_together': (('thread', 'position'),), 'pk_attr': 'id', 'table_description': 'An appended change in a thread, replayed to clients resuming after a position.'},
            bases=['Model'],
        ),
    ]
