// The page and the proxy on one origin: Vite forwards /api to sse-fixup (no CORS needed).
// SSE_FIXUP_URL points elsewhere than the default listen address.
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

export default defineConfig({
  plugins: [react()],
  server: { proxy: { '/api': process.env.SSE_FIXUP_URL ?? 'http://127.0.0.1:8090' } },
});
