from tortoise import migrations
from tortoise.migrations import operations as ops
from uuid import uuid4
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('contacts', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='BannedAddress',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('email_index', fields.CharField(unique=True, max_length=64)),
                ('member_index', fields.CharField(unique=True, max_length=64)),
                ('banned_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('hold_until', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'banned_address', 'app': 'contacts', 'pk_attr': 'id', 'table_description': "The keyed blind index of a banned member's email, kept for the legal-hold period."},
            bases=['Model'],
        ),
    ]
