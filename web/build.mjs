// Bundles the page into dist/: app.js (TypeScript and its dependencies) beside index.html
// and style.css. The gateway serves dist/ with --static-dir.
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";

mkdirSync("dist", { recursive: true });
await build({
  entryPoints: ["src/main.ts"],
  bundle: true,
  minify: true,
  sourcemap: true,
  target: "es2020",
  outfile: "dist/app.js",
  logLevel: "warning",
});
for (const file of ["index.html", "style.css"]) {
  copyFileSync(file, `dist/${file}`);
}
