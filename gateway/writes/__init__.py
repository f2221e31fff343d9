"""Mutations as operations on the stores: validation, write order across stores, and the
compensation each multi-store write needs. Resolvers call these; nothing here knows GraphQL.

Write order (the registry row is the commit point a device becomes visible at):
- registerDevice: asset-side profile first (invisible without a registry row), then the
  registry row + credential in one statement. A registry failure deletes the profile unless
  the registry shows the row after all (a timeout can hide a commit); if either step fails,
  the orphan stays invisible and the reconciler removes it.
- updateDevice: profile patch first, then registry fields. A registry failure restores the
  profile (compare-and-set, so a concurrent writer's change is never overwritten).
- decommissionDevice: registry (status + credentials, one statement), then the shadow. A
  shadow-store failure leaves a shadow that reads hide (the device is DECOMMISSIONED) and
  the reconciler deletes.
- ingestTelemetry: readings (one statement), then lastSeenAt. A registry failure leaves
  lastSeenAt behind; the reconciler moves it forward from the telemetry store.
"""
