// Bundles the web client into web/dist: the pages, the scripts (languages split out, loaded on demand), the style and the WebAssembly (the server gzips them as it embeds them).

import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "..", "dist");
const assets = join(dist, "assets");

rmSync(dist, { recursive: true, force: true });
mkdirSync(assets, { recursive: true });

await build({
  entryPoints: { app: join(here, "src/app.js"), home: join(here, "src/home.js") },
  bundle: true,
  splitting: true,
  format: "esm",
  minify: true,
  target: "es2022",
  outdir: assets,
  chunkNames: "chunk-[hash]",
  legalComments: "none",
  logLevel: "warning",
});
copyFileSync(join(here, "src/app.css"), join(assets, "app.css"));
copyFileSync(join(here, "pkg/codecollab_web_bg.wasm"), join(assets, "codecollab_web_bg.wasm"));
for (const page of ["index.html", "session.html"]) copyFileSync(join(here, "static", page), join(dist, page));
