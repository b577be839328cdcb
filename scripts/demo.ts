// `npm run demo`: the broker on its embedded defaults plus local stand-ins of Kivra, Kigo, Klavi and SIR
// Giving on 127.0.0.1:4010-4013, with short token lifetimes so proactive refresh shows in the log within
// a minute or two. Everything stays on loopback; nothing here talks to a real provider.
import { readFileSync } from 'node:fs'
import { parse as parseYaml, stringify as toYaml } from 'yaml'
import closeWithGrace from 'close-with-grace'
import { buildApp } from '../src/app.js'
import { embeddedCredentialsFile, embeddedSecretsFile, loadConfig } from '../src/config.js'
import { tempFile } from '../test/support/app.js'
import { startKigoStandIn, startKivraStandIn, startKlaviStandIn, startSirGivingStandIn } from '../test/support/providers/index.js'

const secrets = JSON.parse(readFileSync(embeddedSecretsFile, 'utf8')) as Record<string, Record<string, string>>
const secret = (path: string): Record<string, string> => secrets[path] ?? {}

const kivra = await startKivraStandIn({ port: 4010, lifetimeSeconds: 120, clientId: secret('secret/providers/kivra').client_id, clientSecret: secret('secret/providers/kivra').client_secret })
const kigo = await startKigoStandIn({ port: 4011, apiKey: secret('secret/providers/kigo').api_key, partnerId: secret('secret/providers/kigo').partner_id })
const klavi = await startKlaviStandIn({ port: 4012, lifetimeSeconds: 60, accessKey: secret('secret/providers/klavi').accessKey, secretKey: secret('secret/providers/klavi').secretKey })
const sirGiving = await startSirGivingStandIn({ port: 4013, ...secret('secret/providers/sir-giving') })

// The example credentials, with Kigo's documented 30 minutes shortened to 90 s for the demo.
const example = parseYaml(readFileSync(embeddedCredentialsFile, 'utf8')) as { credentials: Array<Record<string, unknown>> }
for (const credential of example.credentials) if (credential.provider === 'kigo') credential.lifetime_seconds = 90
const config = loadConfig({
  PORT: process.env.PORT ?? '8080',
  HOST: '127.0.0.1',
  LOG_LEVEL: process.env.LOG_LEVEL ?? 'info',
  CREDENTIALS_FILE: tempFile('demo-credentials.yaml', toYaml(example))
})
const app = await buildApp(config)
closeWithGrace({ delay: 5000 }, async () => {
  await app.close()
  await Promise.all([kivra.close(), kigo.close(), klavi.close(), sirGiving.close()])
})
await app.listen({ port: config.port, host: config.host })

const base = `http://127.0.0.1:${config.port}`
const auth = "-H 'Authorization: Bearer example-api-key-change-me'"
console.log(`
credential-broker demo on ${base} (stand-ins: Kivra :4010 120 s tokens, Kigo :4011 90 s, Klavi :4012 60 s, SIR Giving :4013)

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
