import logging

from alembic import context
from flask import current_app

from app.db_deadlines import engine_for_migrations

# this is the Alembic Config object, which provides
# access to the values within the .ini file in use.
config = context.config

# Logging is the app's own (logging.ini, loaded by create_app); alembic.ini configures none.
logger = logging.getLogger('alembic.env')


def get_engine():
    return current_app.extensions['migrate'].db.engine


def get_engine_url():
    return get_engine().url.render_as_string(hide_password=False).replace('%', '%%')


# add your model's MetaData object here
# for 'autogenerate' support
# from myapp import mymodel
# target_metadata = mymodel.Base.metadata
config.set_main_option('sqlalchemy.url', get_engine_url())
target_db = current_app.extensions['migrate'].db

# other values from the config, defined by the needs of env.py,
# can be acquired:
# my_important_option = config.get_main_option("my_important_option")
# ... etc.


def get_metadata():
    if hasattr(target_db, 'metadatas'):
        return target_db.metadatas[None]
    return target_db.metadata


def run_migrations_offline():
    """Run migrations in 'offline' mode.

    This configures the context with just a URL
    and not an Engine, though an Engine is acceptable
    here as well.  By skipping the Engine creation
    we don't even need a DBAPI to be available.

    Calls to context.execute() here emit the given string to the
    script output.

    """
    url = config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url, target_metadata=get_metadata(), literal_binds=True,
        render_as_batch=True,
    )

    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    """Run migrations in 'online' mode.

    In this scenario we need to create an Engine
    and associate a connection with the context.

    """

    # this callback is used to prevent an auto-migration from being generated
    # when there are no changes to the schema
    # reference: http://alembic.zzzcomputing.com/en/latest/cookbook.html
    def process_revision_directives(context, revision, directives):
        if getattr(config.cmd_opts, 'autogenerate', False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info('No changes in schema detected.')

    # A copy: this module is loaded afresh for every command, so a callback stored in the app's
    # shared configure_args would outlive its run and see the wrong command's options next time
    # (an in-process `upgrade` then `migrate` would write an empty revision).
    conf_args = dict(current_app.extensions['migrate'].configure_args)
    # SQLite cannot ALTER or DROP a column in place: batch mode copies the table instead.
    conf_args["render_as_batch"] = True
    if conf_args.get("process_revision_directives") is None:
        conf_args["process_revision_directives"] = process_revision_directives

    def run_on(connection):
        context.configure(
            connection=connection,
            target_metadata=get_metadata(),
            **conf_args
        )

        with context.begin_transaction():
            context.run_migrations()

    # A caller's own connection (alembic's cookbook): `manage.py new-resource` brings a scratch database to head
    # and autogenerates against it (app/scaffold/migration.py), leaving the app's database alone.
    given = config.attributes.get("connection")
    if given is not None:
        run_on(given)
        return
    # Without database.query_timeout: a long ALTER must not be cut off (app/db_deadlines.py).
    with engine_for_migrations() as connectable, connectable.connect() as connection:
        run_on(connection)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
