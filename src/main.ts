import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { loadConfig, type Config } from './config.js'
import { ConfigError } from './errors.js'

/** How long in-flight requests may take to drain on SIGTERM before the process exits anyway. */
const shutdownDelayMs = 10_000

/** One line per problem, no stack trace: this is read by a person fixing a deployment. Exits 78 (EX_CONFIG). */
function exitOnConfigError (err: unknown): never {
  if (!(err instanceof ConfigError)) throw err
  process.stderr.write(`credential-broker: invalid configuration (${err.problems.length} problem${err.problems.length === 1 ? '' : 's'})\n`)
  for (const problem of err.problems) process.stderr.write(`  ${problem}\n`)
  process.exit(78)
}

let config: Config
try {
  config = loadConfig()
} catch (err) {
  exitOnConfigError(err)
}
// Some configuration can only be checked while building (a key field in Vault, a JWKS file).
const app = await buildApp(config).catch(exitOnConfigError)

closeWithGrace({ delay: shutdownDelayMs }, async ({ signal, err }) => {
  if (err !== undefined) app.log.error({ err }, 'shutting down after an unexpected error')
  else app.log.info({ signal }, 'shutting down')
  await app.close()
  app.logger.flush()
})

try {
  await app.listen({ port: config.port, host: config.host })
} catch (err) {
  app.log.fatal({ err }, 'could not listen')
  await app.close()
  process.exit(1)
}
