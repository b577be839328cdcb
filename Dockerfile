# syntax=docker/dockerfile:1
# credential-broker: two stages. The build stage compiles TypeScript with the dev dependencies; the runtime
# stage holds only production dependencies and the compiled output, and runs as the unprivileged `node` user.

# ---- build ----------------------------------------------------------------------------------------
FROM node:24-bookworm-slim AS build
WORKDIR /app

# Dependencies first, so editing src/ does not invalidate the npm ci layer.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# Compiles to dist/ and copies the example credentials and secrets to dist/embedded/, where the compiled
# src/config.ts looks for them (tsc copies no YAML or JSON).
RUN npm run build

# ---- runtime --------------------------------------------------------------------------------------
FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production
# V8's young generation sized for the broker, not derived from the container's memory limit. Under the
# Deployment's 256Mi Node would give it 1 MB semi-spaces: at ~8 KB allocated per token request that is a
# scavenge every ~130 requests, about 13 % more CPU per request (bench/README.md, "RSS"). 16 MB is what V8
# grows them to under load where memory is plentiful. The old generation stays Node's: sized from the
# limit, it follows a raised limit by itself (deploy test: the young generation fits the Deployment's limit).
ENV NODE_OPTIONS="--max-semi-space-size=16"
WORKDIR /app

COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# Files stay owned by root: the `node` user can read but not change the code it runs.
COPY --from=build /app/dist ./dist

USER node
EXPOSE 8080

# Slim images have no curl or wget; Node's global fetch does the probe.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# node directly (not npm start): it receives SIGTERM itself, so close-with-grace can drain requests.
CMD ["node", "dist/main.js"]
