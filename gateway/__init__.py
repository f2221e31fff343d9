"""IoTSphere Gateway: one GraphQL API over the device registry, asset DB, telemetry and shadows."""
