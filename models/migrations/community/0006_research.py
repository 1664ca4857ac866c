from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from models.research import AttributeKind, InvitationStatus, QuestionKind, StudyKind
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('community', '0005_moderation_actions')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ResearchAttribute',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('key', fields.CharField(unique=True, max_length=40)),
                ('kind', fields.CharEnumField(description='SINGLE_CHOICE: single_choice\nMULTIPLE_CHOICE: multiple_choice\nNUMBER: number\nYEAR: year', enum_type=AttributeKind, max_length=16)),
                ('label_fi', fields.CharField(max_length=200)),
                ('label_sv', fields.CharField(max_length=200)),
                ('label_en', fields.CharField(max_length=200)),
                ('options', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('min_value', fields.IntField(null=True)),
                ('max_value', fields.IntField(null=True)),
                ('created_by_id', fields.IntField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'research_attribute', 'app': 'community', 'pk_attr': 'id', 'table_description': 'A coarse, non-identifying attribute that members may fill in voluntarily.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='AttributeValue',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('member', fields.ForeignKeyField('community.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='attribute_values', on_delete=OnDelete.CASCADE)),
                ('attribute', fields.ForeignKeyField('community.ResearchAttribute', source_field='attribute_id', db_constraint=True, to_field='id', related_name='values', on_delete=OnDelete.CASCADE)),
                ('text', fields.CharField(null=True, max_length=40)),
                ('number', fields.IntField(null=True)),
            ],
            options={'table': 'attribute_value', 'app': 'community', 'indexes': [Index(fields=['attribute_id', 'text']), Index(fields=['attribute_id', 'number']), Index(fields=['member_id'])], 'pk_attr': 'id', 'table_description': "A member's value of an attribute: one row per chosen option, or one number."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Segment',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(unique=True, max_length=100)),
                ('rule', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('created_by_id', fields.IntField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'segment', 'app': 'community', 'pk_attr': 'id', 'table_description': 'A saved rule: a tree of AND/OR conditions over attributes and participation.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Study',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('title_fi', fields.CharField(max_length=200)),
                ('title_sv', fields.CharField(max_length=200)),
                ('title_en', fields.CharField(max_length=200)),
                ('description_fi', fields.TextField(default='', unique=False)),
                ('description_sv', fields.TextField(default='', unique=False)),
                ('description_en', fields.TextField(default='', unique=False)),
                ('reward_fi', fields.TextField(default='', unique=False)),
                ('reward_sv', fields.TextField(default='', unique=False)),
                ('reward_en', fields.TextField(default='', unique=False)),
                ('kind', fields.CharEnumField(description='SURVEY: survey\nDISCUSSION: discussion\nBOTH: both', enum_type=StudyKind, max_length=16)),
                ('opens_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('closes_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('target', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('sample_seed', fields.CharField(null=True, max_length=64)),
                ('reminder_days', fields.IntField(default=0)),
                ('max_reminders', fields.IntField(default=0)),
                ('area', fields.ForeignKeyField('community.Area', source_field='area_id', null=True, db_constraint=True, to_field='id', related_name='studies', on_delete=OnDelete.RESTRICT)),
                ('masked', fields.BooleanField(default=False)),
                ('launched_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('closed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('archived_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_by_id', fields.IntField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'study', 'app': 'community', 'pk_attr': 'id', 'table_description': 'A research study: texts in three languages, a schedule, a target and a reward.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PrizeDraw',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('study', fields.ForeignKeyField('community.Study', source_field='study_id', db_constraint=True, to_field='id', related_name='draws', on_delete=OnDelete.CASCADE)),
                ('redraw_of_id', fields.IntField(null=True)),
                ('prizes', fields.IntField()),
                ('eligible', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('eligible_hash', fields.CharField(max_length=64)),
                ('seed', fields.CharField(max_length=64)),
                ('winners', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('claim_days', fields.IntField(default=30)),
                ('drawn_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('drawn_by_id', fields.IntField(null=True)),
            ],
            options={'table': 'prize_draw', 'app': 'community', 'pk_attr': 'id', 'table_description': "A draw among a study's completers, reproducible from its frozen list and seed."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Question',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('study', fields.ForeignKeyField('community.Study', source_field='study_id', db_constraint=True, to_field='id', related_name='questions', on_delete=OnDelete.CASCADE)),
                ('position', fields.IntField()),
                ('kind', fields.CharEnumField(description='SINGLE_CHOICE: single_choice\nMULTIPLE_CHOICE: multiple_choice\nSCALE_5: scale_5\nNPS: nps\nTEXT: text', enum_type=QuestionKind, max_length=16)),
                ('text_fi', fields.TextField(unique=False)),
                ('text_sv', fields.TextField(unique=False)),
                ('text_en', fields.TextField(unique=False)),
                ('options', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('required', fields.BooleanField(default=True)),
            ],
            options={'table': 'question', 'app': 'community', 'unique_together': (('study', 'position'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Response',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('study', fields.ForeignKeyField('community.Study', source_field='study_id', db_constraint=True, to_field='id', related_name='responses', on_delete=OnDelete.CASCADE)),
                ('respondent_code', fields.CharField(max_length=16)),
                ('submitted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'response', 'app': 'community', 'unique_together': (('study', 'respondent_code'),), 'pk_attr': 'id', 'table_description': "One respondent's answers to one study, under a random respondent code."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Answer',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('response', fields.ForeignKeyField('community.Response', source_field='response_id', db_constraint=True, to_field='id', related_name='answers', on_delete=OnDelete.CASCADE)),
                ('question', fields.ForeignKeyField('community.Question', source_field='question_id', db_constraint=True, to_field='id', related_name='answers', on_delete=OnDelete.CASCADE)),
                ('value', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('saved_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'answer', 'app': 'community', 'unique_together': (('response', 'question'),), 'pk_attr': 'id', 'table_description': 'A saved answer to one question: {"choice": v}, {"choices": [...]}, {"scale": n}'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Invitation',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('study', fields.ForeignKeyField('community.Study', source_field='study_id', db_constraint=True, to_field='id', related_name='invitations', on_delete=OnDelete.CASCADE)),
                ('member', fields.ForeignKeyField('community.Member', source_field='member_id', null=True, db_constraint=True, to_field='id', related_name='invitations', on_delete=OnDelete.SET_NULL)),
                ('response', fields.OneToOneField('community.Response', source_field='response_id', null=True, db_constraint=True, to_field='id', related_name='invitation', on_delete=OnDelete.SET_NULL)),
                ('status', fields.CharEnumField(default=InvitationStatus.INVITED, description='INVITED: invited\nOPENED: opened\nSTARTED: started\nCOMPLETED: completed\nDECLINED: declined', enum_type=InvitationStatus, max_length=16)),
                ('invited_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('opened_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('started_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('completed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('declined_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('email_queued', fields.BooleanField(default=False)),
                ('reminders_sent', fields.IntField(default=0)),
                ('last_reminded_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'invitation', 'app': 'community', 'unique_together': (('study', 'member'),), 'indexes': [Index(fields=['member_id', 'invited_at'])], 'pk_attr': 'id', 'table_description': 'One member invited to one study (never two), and how far they got.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Reward',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('draw', fields.ForeignKeyField('community.PrizeDraw', source_field='draw_id', db_constraint=True, to_field='id', related_name='rewards', on_delete=OnDelete.CASCADE)),
                ('member', fields.ForeignKeyField('community.Member', source_field='member_id', null=True, db_constraint=True, to_field='id', related_name='rewards', on_delete=OnDelete.SET_NULL)),
                ('invitation_id', fields.IntField()),
                ('won_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('claim_by', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('claimed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('forfeited_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'reward', 'app': 'community', 'pk_attr': 'id', 'table_description': 'A prize won by a member: shown to them, never to researchers.'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Area',
            name='masked',
            field=fields.BooleanField(default=False, db_default=False),
        ),
        ops.AddField(
            model_name='Area',
            name='study_id',
            field=fields.IntField(null=True, db_index=True),
        ),
        ops.AddField(
            model_name='Member',
            name='study_emails',
            field=fields.BooleanField(default=True, db_default=True),
        ),
    ]
