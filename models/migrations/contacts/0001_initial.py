from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from uuid import uuid4
from tortoise import fields

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='Contact',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('email_ciphertext', fields.BinaryField()),
                ('email_index', fields.CharField(unique=True, max_length=64)),
                ('birth_year', fields.IntField()),
                ('language', fields.CharField(max_length=2)),
                ('member_index', fields.CharField(unique=True, max_length=64)),
                ('member_seal', fields.BinaryField()),
                ('verified_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'contact', 'app': 'contacts', 'pk_attr': 'id', 'table_description': "One person's contact record."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Consent',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('contact', fields.ForeignKeyField('contacts.Contact', source_field='contact_id', db_constraint=True, to_field='id', related_name='consents', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharField(max_length=32)),
                ('version', fields.CharField(default='', max_length=32)),
                ('given_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('withdrawn_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'consent', 'app': 'contacts', 'pk_attr': 'id', 'table_description': 'A consent or acknowledgement the person gave (or withdrew).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='EmailToken',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('contact', fields.ForeignKeyField('contacts.Contact', source_field='contact_id', db_constraint=True, to_field='id', related_name='tokens', on_delete=OnDelete.CASCADE)),
                ('purpose', fields.CharField(max_length=16)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('new_email_ciphertext', fields.BinaryField(null=True)),
                ('new_email_index', fields.CharField(null=True, max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'email_token', 'app': 'contacts', 'pk_attr': 'id', 'table_description': 'A single-use, expiring link token sent by email. Only its hash is stored.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='OutboxMessage',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('contact', fields.ForeignKeyField('contacts.Contact', source_field='contact_id', null=True, db_constraint=True, to_field='id', related_name='outbox', on_delete=OnDelete.CASCADE)),
                ('template', fields.CharField(max_length=32)),
                ('language', fields.CharField(max_length=2)),
                ('recipient_ciphertext', fields.BinaryField()),
                ('subject', fields.CharField(max_length=200)),
                ('body_ciphertext', fields.BinaryField()),
                ('status', fields.CharField(default='pending', db_index=True, max_length=16)),
                ('attempts', fields.IntField(default=0)),
                ('next_attempt_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('claimed_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_error', fields.CharField(default='', max_length=300)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('sent_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'outbox_message', 'app': 'contacts', 'pk_attr': 'id', 'table_description': 'An email waiting for (or done with) delivery: the transactional outbox.'},
            bases=['Model'],
        ),
    ]
