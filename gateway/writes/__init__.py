"""Mutations as operations on the stores: validation, write order across stores, and the
recovery each multi-store write needs. Resolvers call these; nothing here knows GraphQL.

Write order (the registry row is the commit point a device becomes visible at). A store
call that fails without an answer may still have committed: no step below undoes another
store's write on such a failure; what an unknown outcome leaves is either invisible or
completed later, and the reconciler (``gateway.jobs.reconciler``) finishes it.
- registerDevice: asset-side profile first (invisible without a registry row), then the
  registry row + credential in one statement. A refused row (duplicate serial) deletes the
  profile at once; any other failure leaves it, invisible, and the reconciler deletes it
  once the registration is older than its grace and the registry has no such device.
- updateDevice: registry fields, and the profile part recorded as an intent in the same
  statement (an outbox), then the profile applied from it (``profile_intents``): an
  unanswered registry commit either recorded the intent, which the reconciler completes,
  or changed nothing. Retrying the same input is idempotent (a merge patch applied twice).
- decommissionDevice: registry (status + credentials, one statement), then the shadow. A
  shadow-store failure, or an unanswered registry commit, leaves a shadow that reads hide
  (the device is DECOMMISSIONED) and the reconciler deletes.
- ingestTelemetry: readings (one statement), then lastSeenAt. A registry failure, or an
  unanswered telemetry commit, leaves lastSeenAt behind; the reconciler moves it forward
  from the telemetry store. A retry's readings are duplicates, skipped and counted as such.
"""
