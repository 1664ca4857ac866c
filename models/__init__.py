"""Tortoise models of the two registers.

``community`` holds everything members, staff and researchers work with;
``contacts`` holds the operator-only member register (email, age data,
language, consents, the email outbox). The two are separate databases, and
this package imports nothing else of the project.
"""
