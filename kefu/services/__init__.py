"""The domain rules. No request, socket or protocol object crosses into this package:
functions take plain values, run one transaction, and return (result, events)."""
