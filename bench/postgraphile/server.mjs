// PostGraphile v5 (amber preset, defaults otherwise) over DATABASE_URL, served by grafserv on
// node:http at http://HOST:PORT/graphql. Started and stopped by bench/vs_postgraphile.py.
import { createServer } from "node:http";
import { postgraphile } from "postgraphile";
import { makePgService } from "postgraphile/adaptors/pg";
import { grafserv } from "postgraphile/grafserv/node";
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";

const { DATABASE_URL, HOST = "127.0.0.1", PORT } = process.env;
if (!DATABASE_URL || !PORT) {
  console.error("DATABASE_URL and PORT must be set");
  process.exit(2);
}

const preset = {
  extends: [PostGraphileAmberPreset],
  pgServices: [makePgService({ connectionString: DATABASE_URL, schemas: ["public"] })],
  grafserv: { graphqlPath: "/graphql", graphiql: false, watch: false },
  grafast: { explain: false },
};

const pgl = postgraphile(preset);
const serv = pgl.createServ(grafserv);
const server = createServer();
server.on("error", (error) => {
  console.error(error);
  process.exit(1);
});
await serv.addTo(server);
server.listen(Number(PORT), HOST, () => console.log(`postgraphile listening on ${HOST}:${PORT}`));

// SIGINT/SIGTERM: release the pool and exit (the benchmark kills the group if this hangs).
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => {
    server.close();
    pgl.release().finally(() => process.exit(0));
  });
}
