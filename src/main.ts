import { setFlagsFromString } from 'node:v8'
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { loadConfig, type Config } from './config.js'
import { ConfigError } from './errors.js'
import { servesWithStandIns, startStandInsForExampleCredentials, type EmbeddedStandIns } from './embedded/stand-ins/embedded.js'
import { createLogger } from './observability/logger.js'
import { assertPortFree, exitOnPortInUse, isAddressInUse, PortInUseError } from './ports.js'

/** How long in-flight requests may take to drain on SIGTERM before the process exits anyway. */
const shutdownDelayMs = 10_000
/**
 * How long open keep-alive connections get to carry one more request (answered with Connection: close)
 * before the ones still idle are closed. Within shutdownDelayMs together with the broker's own 7 s drain.
 */
const connectionDrainMs = 2_000
const portHint = 'set PORT (and HOST) to a free one'

/** One line per problem, no stack trace: this is read by a person fixing a deployment. Exits 78 (EX_CONFIG). */
function exitOnConfigError (err: unknown): never {
  if (!(err instanceof ConfigError)) throw err
  process.stderr.write(`credential-broker: invalid configuration (${err.problems.length} problem${err.problems.length === 1 ? '' : 's'})\n`)
  for (const problem of err.problems) process.stderr.write(`  ${problem}\n`)
  process.exit(78)
}

/*
 * WebAssembly is compiled by V8's baseline compiler (Liftoff) only, never tiered up to TurboFan. The only
 * WebAssembly the broker runs is llhttp, the HTTP/1 parser of undici and of Node's fetch (provider calls,
 * the proxy); TurboFan compiling its one very large parse function held 30–45 MB of compiler memory for
 * about 0.4 s after the first provider call, the broker's memory high-water mark (bench/README.md, "RSS").
 * Liftoff code parses a provider's answer a little slower, which the proxy bench measures. Set here, before
 * any HTTP client runs; V8 reads it when it compiles a module.
 */
setFlagsFromString('--liftoff-only')

let config: Config
try {
  config = loadConfig()
} catch (err) {
  exitOnConfigError(err)
}
// A taken port is found before anything starts or logs.
await assertPortFree('the broker', config.host, config.port).catch((err: unknown) => exitOnPortInUse(err, portHint))

let logger: ReturnType<typeof createLogger>
try {
  logger = createLogger(config.logLevel, undefined, config.logFormat)
} catch (err) {
  exitOnConfigError(err)
}
// The example credentials point at provider stand-ins: start them first, in this process, so the first
// proactive mint succeeds and the README's requests answer with nothing configured. Never in production.
let standIns: EmbeddedStandIns | undefined
if (servesWithStandIns(config)) ({ config, standIns } = await startStandInsForExampleCredentials(config, logger))

// Some configuration can only be checked while building (a key field in Vault, a JWKS file).
const app = await buildApp(config, { logger }).catch(exitOnConfigError)

closeWithGrace({ delay: shutdownDelayMs }, async ({ signal, err }) => {
  if (err !== undefined) app.log.error({ err }, 'shutting down after an unexpected error')
  else app.log.info({ signal }, 'shutting down')
  await app.connections.drain(connectionDrainMs)
  await app.close()
  await standIns?.close()
  app.logger.flush()
})

try {
  await app.listen({ port: config.port, host: config.host })
} catch (err) {
  await app.close()
  await standIns?.close()
  // Taken between the check above and now: the same one line.
  if (isAddressInUse(err)) exitOnPortInUse(new PortInUseError('the broker', config.host, config.port), portHint)
  app.log.fatal({ err }, 'could not listen')
  process.exit(1)
}
