// Vite config for the web client: `npx vite build web` -> web/dist (served by the node at /).
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/',
  resolve: {
    // The SDK lives in clients/js; imported as a package name.
    alias: { '@converge/client': fileURLToPath(new URL('../clients/js/src/index.js', import.meta.url)) },
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2020',
    sourcemap: true,
  },
  server: {
    host: '127.0.0.1',
    fs: { allow: ['..'] },
    // `npx vite web` for development against a node on :8080
    proxy: {
      '/api': 'http://127.0.0.1:8080',
      '/ws': { target: 'ws://127.0.0.1:8080', ws: true },
    },
  },
});
