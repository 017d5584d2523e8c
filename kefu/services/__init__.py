"""The domain rules. No request, socket or protocol object crosses into this package:
functions take plain values and return plain values. A change runs in one transaction;
where others must hear of it, it returns the events (alone, or as ``(result, events)``)
for the caller to publish once it has committed."""
