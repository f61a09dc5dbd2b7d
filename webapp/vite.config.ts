/// <reference types="vitest/config" />
// The web client's build: Preact through esbuild's automatic JSX runtime (no Babel), served by every node under
// /app/. Nothing is inlined (no data: URLs, no inline script or style), so the app runs under the strict
// Content-Security-Policy the node sends with it.
import { defineConfig } from "vite";

export default defineConfig({
  base: "/app/",
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsInlineLimit: 0,
    target: "es2022",
    modulePreload: { polyfill: false },
  },
  test: { include: ["src/**/*.test.ts"] },
});
