// `npm run demo`: `npm start` on its embedded defaults (the example credentials and their provider
// stand-ins in this process), with short token lifetimes so proactive refresh shows in the log within a
// minute or two. Everything stays on loopback; nothing here talks to a real provider.
import closeWithGrace from 'close-with-grace'
import { buildApp } from '../src/app.js'
import { embeddedCredentialsFile, loadConfig, withCredentials } from '../src/config.js'
import { startStandInsForExampleCredentials } from '../src/embedded/stand-ins/embedded.js'
import { createLogger } from '../src/observability/logger.js'
import { assertPortFree, exitOnPortInUse, isAddressInUse, PortInUseError } from '../src/ports.js'

const portHint = 'set PORT to a free one (PORT=8090 npm run demo)'
const loaded = loadConfig({
  PORT: process.env.PORT ?? '8080',
  HOST: '127.0.0.1',
  LOG_LEVEL: process.env.LOG_LEVEL ?? 'info',
  CREDENTIALS_FILE: embeddedCredentialsFile
})
await assertPortFree('the demo broker', loaded.host, loaded.port).catch((err: unknown) => exitOnPortInUse(err, portHint))
// Kigo's documented 30 minutes (it returns no lifetime) shortened to 90 s for the demo.
const example = withCredentials(loaded, loaded.credentials.map(credential => credential.provider === 'kigo' ? { ...credential, lifetime_seconds: 90 } : credential))
const logger = createLogger(example.logLevel)
const { config, standIns } = await startStandInsForExampleCredentials(example, logger, { lifetimes: { kivra: 120, klavi: 60 } })
const app = await buildApp(config, { logger })
closeWithGrace({ delay: 5000 }, async () => {
  await app.close()
  await standIns.close()
})
try {
  await app.listen({ port: config.port, host: config.host })
} catch (err) {
  await app.close()
  await standIns.close()
  if (isAddressInUse(err)) exitOnPortInUse(new PortInUseError('the demo broker', config.host, config.port), portHint)
  throw err
}

const base = `http://127.0.0.1:${config.port}`
const auth = "-H 'Authorization: Bearer example-api-key-change-me'"
console.log(`
credential-broker demo on ${base} (stand-ins: Kivra 120 s tokens, Kigo 90 s, Klavi 60 s, SIR Giving; see the log line for their ports)

  curl -s ${auth} ${base}/v1/credentials/kivra-sandbox/token?min_ttl=30
  curl -s ${auth} ${base}/v1/credentials/kigo-sandbox/token
  curl -s ${auth} ${base}/v1/credentials/klavi-sandbox/token?min_ttl=10
  curl -s ${auth} -H 'content-type: application/json' \\
    -d '{"method":"GET","path":"/v1/partner/pools","body_sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}' \\
    ${base}/v1/credentials/sir-giving-sandbox/signatures
  curl -s ${auth} ${base}/v1/credentials
  curl -s -H 'Authorization: Bearer example-admin-key-change-me' ${base}/v1/admin/credentials
  open ${base}/docs

Watch for "grant refreshed" lines: each token is refreshed at about 75 % of its life. Ctrl-C stops everything.
`)
