"""Business logic, free of GraphQL.

Three verbs, as in Zulip: ``access_*`` loads and authorizes (the same
neutral error for "missing" and "forbidden"), ``check_*`` validates, and
``do_*`` writes inside one transaction and is the only code that publishes
events, after the commit. Expected failures are raised as
:class:`resolvers.errors.UserError` with a stable code.
"""
