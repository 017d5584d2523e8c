"""CPU-heavy calls that must not freeze the gevent hub.

A password check costs hundreds of milliseconds of CPU; run inline it would stall every
socket of the worker. Under gevent it runs in the hub's native thread pool instead (the
hash must release the GIL for that to help: OpenSSL's PBKDF2 does, scrypt does not, see
accounts.PASSWORD_METHOD). Outside gevent (CLI, unit tests) it simply runs.
"""


def off_hub(fn, *args):
    from gevent import monkey

    if not monkey.is_module_patched("threading"):
        return fn(*args)
    import gevent

    return gevent.get_hub().threadpool.apply(fn, args)
