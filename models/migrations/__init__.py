"""Generated schema migrations, one package per model app."""
