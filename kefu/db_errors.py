"""What a database driver's exception says: its message on one line, and whether the
database rolled the transaction back to break a deadlock (the job may run again)."""


def error_text(exc: BaseException) -> str:
    """The driver's message on one line, without the wrapping around it."""
    args = exc.args
    if len(args) == 1 and isinstance(args[0], BaseException):
        return error_text(args[0])  # peewee's error wrapping the driver's
    if len(args) == 2 and isinstance(args[0], int):
        args = args[1:]  # PyMySQL's (code, message)
    text = " ".join(str(a) for a in args) if args else type(exc).__name__
    text = " ".join(line.strip() for line in text.splitlines() if line.strip())
    # psycopg2: 'connection to server at "h", port 5432 failed: FATAL:  <what>'
    return text.split("failed: FATAL:", 1)[-1].strip()


# The database broke a deadlock by rolling this transaction back: MySQL's
# ER_LOCK_DEADLOCK, PostgreSQL's deadlock_detected and serialization_failure.
_MYSQL_DEADLOCK = 1213
_POSTGRES_ROLLED_BACK = {"40P01", "40001"}


def rolled_back_by_deadlock(exc: BaseException) -> bool:
    """True if ``exc``, or an error it was raised while handling, says the database
    rolled the transaction back to break a deadlock. The chain is followed because
    peewee raises its own class from the driver's, and because on MySQL the rollback
    also ends the job's savepoints: leaving one then fails with "SAVEPOINT ... does not
    exist", raised while the deadlock error was being handled."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if getattr(exc, "pgcode", None) in _POSTGRES_ROLLED_BACK:
            return True
        from_mysql = type(exc).__module__.startswith("pymysql")
        if from_mysql and exc.args and exc.args[0] == _MYSQL_DEADLOCK:
            return True
        exc = exc.__cause__ or exc.__context__
    return False
