// Bundles @segment/analytics-next (from npm) into one browser file for the test page:
// window.AnalyticsBrowser. Output lives under node_modules (never committed).
import { build } from "esbuild";
import { mkdirSync } from "node:fs";

const out = new URL("./node_modules/.switchboard/analytics-next.js", import.meta.url).pathname;
mkdirSync(new URL("./node_modules/.switchboard/", import.meta.url).pathname, { recursive: true });
await build({
  stdin: {
    contents: "import { AnalyticsBrowser } from '@segment/analytics-next'; window.AnalyticsBrowser = AnalyticsBrowser;",
    resolveDir: new URL(".", import.meta.url).pathname,
  },
  bundle: true, format: "iife", platform: "browser", target: "es2018", minify: true, outfile: out, logLevel: "warning",
});
console.log(out);
