// Each test server is a whole app with its own OpenTelemetry meter provider, but meter listeners are
// process-wide: two servers alive at once register the same meter and instrument names, and one's
// measurements can be set aside as duplicates. Test collections therefore run one after another, so only one
// server's meters exist at a time (as in production, where a process hosts one server).
[assembly: CollectionBehavior(DisableTestParallelization = true)]
