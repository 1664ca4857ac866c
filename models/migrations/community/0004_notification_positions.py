from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('community', '0003_moderation_reports')]

    initial = False

    operations = [
        ops.CreateModel(
            name='NotificationCounter',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('member', fields.OneToOneField('community.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='notification_counter', on_delete=OnDelete.CASCADE)),
                ('last_position', fields.IntField(default=0)),
            ],
            options={'table': 'notification_counter', 'app': 'community', 'pk_attr': 'id', 'table_description': 'The last notification position handed out to one member.'},
            bases=['Model'],
        ),
        ops.AlterModelOptions(
            name='Notification',
            options={'table': 'notification', 'app': 'community', 'indexes': [Index(fields=['member_id', 'id']), Index(fields=['member_id', 'position'])], 'pk_attr': 'id', 'table_description': 'A personal notice for one member, at the next position of their own stream.'},
        ),
        ops.AddField(
            model_name='Notification',
            name='position',
            field=fields.IntField(default=0, db_default=0),
        ),
        ops.AddIndex(
            model_name='Notification',
            index=Index(fields=['member_id', 'position']),
        ),
    ]
