// Builds the web client into web/dist (served by the stack at the gateway's /):
//   index.html, app/app.js (one ES module: the app, the generated clients, connect-web),
//   app/app.css (uPlot's stylesheet and web/styles.css). `make web` runs it after `buf generate`
//   and a type check.

import { build } from "esbuild";
import { copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");

await rm(dist, { recursive: true, force: true });
await mkdir(join(dist, "app"), { recursive: true });
await build({
  entryPoints: [join(here, "src", "main.ts")],
  outfile: join(dist, "app", "app.js"),
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  sourcemap: "linked",
  legalComments: "none",
  logLevel: "warning",
});
await copyFile(join(here, "index.html"), join(dist, "index.html"));
// The chart library's own stylesheet (uPlot, the operator dashboard's charts), then ours.
const uplotCss = await readFile(join(here, "..", "node_modules", "uplot", "dist", "uPlot.min.css"), "utf8");
const styles = await readFile(join(here, "styles.css"), "utf8");
await writeFile(join(dist, "app", "app.css"), `${uplotCss}\n${styles}`);
console.log(`web: built ${dist}`);
