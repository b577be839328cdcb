/**
 * The provider stand-ins as a process of their own, on the documented ports 4010-4013, for what runs the
 * broker elsewhere: docker compose (`node dist/embedded/stand-ins/main.js --host 0.0.0.0`), or a local
 * broker whose credentials file is a copy of the example (`npm run stand-ins`). They accept the secrets
 * of the example credentials (`--credentials`, `--secrets` choose others). Local fakes: nothing here
 * talks to a real provider.
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { embeddedCredentialsFile, embeddedSecretsFile, parseCredentialsFile } from '../../config.js'
import { createLogger } from '../../observability/logger.js'
import { exitOnPortInUse } from '../../ports.js'
import { fixedStandInPorts, startEmbeddedStandIns } from './embedded.js'

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    credentials: { type: 'string', default: embeddedCredentialsFile },
    secrets: { type: 'string', default: embeddedSecretsFile }
  }
})
const credentials = parseCredentialsFile(readFileSync(values.credentials, 'utf8'), values.credentials).credentials
const secrets = JSON.parse(readFileSync(values.secrets, 'utf8')) as Record<string, Record<string, string>>
const log = createLogger(process.env.LOG_LEVEL ?? 'info')

const standIns = await startEmbeddedStandIns({ credentials, secrets, host: values.host, ports: fixedStandInPorts })
  .catch((err: unknown) => exitOnPortInUse(err, 'stop what holds it (another `npm run stand-ins`, `docker compose up`?)'))
log.info({ host: values.host, ports: fixedStandInPorts }, 'provider stand-ins listening (local fakes of Kivra, Kigo, Klavi and SIR Giving)')

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    void standIns.close().then(() => { process.exit(0) })
  })
}
