// One autocannon run for bench/vs_postgraphile.py: argv[2] is JSON {url, body, headers,
// connections, seconds}. Prints one JSON line: every response's latency in ms (autocannon's own
// histogram keeps whole milliseconds, too coarse at ~1 ms), status classes, response sizes
// (a GraphQL error changes the size of an otherwise constant answer) and this process's CPU.
import autocannon from "autocannon";

const { url, body, headers, connections, seconds } = JSON.parse(process.argv[2]);
const latencies = [];
const statuses = {};
const sizes = {};

const instance = autocannon(
  { url, method: "POST", body, headers, connections, duration: seconds, pipelining: 1 },
  (error, result) => {
    if (error) {
      console.error(error);
      process.exit(1);
    }
    const cpu = process.cpuUsage();
    console.log(JSON.stringify({
      seconds: result.duration, latencies, statuses, sizes,
      errors: result.errors, timeouts: result.timeouts,
      clientCpuMs: (cpu.user + cpu.system) / 1000,
    }));
  },
);
instance.on("response", (_client, statusCode, resBytes, responseTime) => {
  latencies.push(responseTime);
  statuses[statusCode] = (statuses[statusCode] ?? 0) + 1;
  sizes[resBytes] = (sizes[resBytes] ?? 0) + 1;
});
