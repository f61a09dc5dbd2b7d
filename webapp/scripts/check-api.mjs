// Fails when src/api/schema.d.ts is not what openapi-typescript makes of ../openapi/openapi.json today: the
// client's API types are generated, never edited (`npm run gen:api` rewrites them).
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const out = join(mkdtempSync(join(tmpdir(), "gochat-api-")), "schema.d.ts");
execFileSync("npx", ["openapi-typescript", "../openapi/openapi.json", "-o", out], { stdio: "ignore" });
if (readFileSync(out, "utf8") !== readFileSync("src/api/schema.d.ts", "utf8")) {
  console.error("webapp/src/api/schema.d.ts is stale: run `npm run gen:api` in webapp/ and commit it");
  process.exit(1);
}
console.log("webapp/src/api/schema.d.ts matches openapi/openapi.json");
