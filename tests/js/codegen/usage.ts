// Typed use of the generated code: every custom scalar arrives with its documented wire
// type (tsc --strict fails on `unknown` or `any` where a string is expected).
import { graphql } from './generated/gql';
import type { DeviceViewQuery, FleetPageQuery } from './generated/graphql';

export const DeviceView = graphql(`
  query DeviceView($id: ID!, $bucket: Interval!) {
    device(id: $id) {
      id name lastSeenAt metadata
      shadow { id version desired updatedAt }
      telemetry(metric: "temperature", bucket: $bucket) {
        bucket points { time value }
      }
    }
  }
`);

export const FleetPage = graphql(`
  query FleetPage($filter: DeviceFilter, $orderBy: DeviceOrder, $last: Int, $before: String) {
    devices(filter: $filter, orderBy: $orderBy, last: $last, before: $before) {
      totalCount
      edges { cursor node { id name status lastSeenAt } }
      pageInfo { hasPreviousPage startCursor }
    }
    fleetOverview(filter: $filter) { total byStatus { status count } }
  }
`);

export function describe(data: DeviceViewQuery): string {
  const device = data.device;
  if (!device) return 'none';
  const seen: string | null | undefined = device.lastSeenAt;
  const updated: string | null | undefined = device.shadow?.updatedAt;
  const bucket: string | null | undefined = device.telemetry?.bucket;
  const times: string[] = device.telemetry?.points.map((p) => p.time) ?? [];
  const maker = typeof device.metadata === 'object' && device.metadata !== null
    && !Array.isArray(device.metadata) ? device.metadata['maker'] : undefined;
  return [seen, updated, bucket, times.join(','), String(maker)].join(' ');
}

export function neverSeen(data: FleetPageQuery): string[] {
  return data.devices?.edges.filter((e) => e.node.lastSeenAt === null).map((e) => e.node.id) ?? [];
}
