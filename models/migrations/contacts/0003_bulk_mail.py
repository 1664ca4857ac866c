from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('contacts', '0002_banned_addresses')]

    initial = False

    operations = [
        ops.AddField(
            model_name='OutboxMessage',
            name='bulk',
            field=fields.BooleanField(default=False, db_default=False),
        ),
    ]
