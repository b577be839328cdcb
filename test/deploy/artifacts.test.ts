import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join, posix, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Registry } from 'prom-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse as parseYaml, parseAllDocuments } from 'yaml'
import { embeddedCredentialsFile, embeddedSecretsFile, EnvSchema, loadConfig, parseCredentialsFile, type CredentialsFile } from '../../src/config.js'
import type { ProviderKind } from '../../src/providers/catalog.js'
import { fixedStandInPorts, standInProviders, type StandInProvider } from '../../src/embedded/stand-ins/embedded.js'
import { createMetrics, refreshReasons, refreshResults, tokenRequestResults } from '../../src/observability/metrics.js'
import { memoryQuantityBytes } from '../support/deployment.js'
import { logicalLines, parseDockerfile, runtimeEnv } from '../support/dockerfile.js'

/*
 * There is no Docker engine or cluster here, so these tests read the deployment artifacts and check what
 * the broker relies on: variable names against EnvSchema, credentials files against the real parser,
 * secret paths against the seed script, and alert queries against the metrics createMetrics() registers.
 */

const root = fileURLToPath(new URL('../../', import.meta.url))
const read = (path: string): string => readFileSync(join(root, path), 'utf8')
const envNames = new Set(Object.keys(EnvSchema.shape))
/** Variables Node itself reads that a pod may set beside the broker's own. */
const nodeOwnEnv = new Set(['NODE_OPTIONS'])

/** Secret fields each provider adapter needs (docs/providers.md, "Common shape"). */
const requiredSecretFields: Record<ProviderKind, readonly string[]> = {
  kivra: ['client_id', 'client_secret'],
  oauth2: ['client_id', 'client_secret'],
  kigo: ['api_key', 'partner_id'],
  klavi: ['accessKey', 'secretKey'],
  'sir-giving': ['secretKey', 'hmacSecret']
}

type Json = Record<string, unknown>
const asObject = (value: unknown): Json => (value !== null && typeof value === 'object' && !Array.isArray(value) ? value as Json : {})
const asArray = (value: unknown): unknown[] => (Array.isArray(value) ? value : [])

describe('Dockerfile', () => {
  const stages = parseDockerfile(read('Dockerfile'))
  const runtime = stages.at(-1)!
  const build = stages[0]!
  const runtimeArgs = (keyword: string): string[] => runtime.instructions.filter(i => i.keyword === keyword).map(i => i.args)

  it('is multi-stage, every stage on an LTS Node image', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2)
    for (const stage of stages) {
      const version = /^node:(\d+)(?:[.-]|$)/.exec(stage.from)
      expect(version, `FROM ${stage.from}`).not.toBeNull()
      const major = Number(version![1])
      // Even majors become LTS; 20 is end of life.
      expect(major % 2, `FROM ${stage.from} is not an LTS line`).toBe(0)
      expect(major).toBeGreaterThanOrEqual(22)
    }
  })

  it('builds with the build script and copies the embedded examples beside the compiled config', () => {
    const runs = build.instructions.filter(i => i.keyword === 'RUN').map(i => i.args)
    expect(runs.some(run => /\bnpm ci\b/.test(run))).toBe(true)
    expect(runs.some(run => /\bnpm run build\b/.test(run))).toBe(true)
    // `npm run build` copies the embedded examples beside the compiled config (the first-start test runs the result).
    const buildScript = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts.build ?? ''
    expect(buildScript).toMatch(/cpSync\('src\/embedded', 'dist\/embedded'/)
    // The examples that config.ts reads relative to its compiled module must exist to be copied.
    expect(existsSync(join(root, 'src/embedded/credentials.example.yaml'))).toBe(true)
    expect(existsSync(join(root, 'src/embedded/secrets.example.json'))).toBe(true)
    // tsc puts src/main.ts at dist/main.js and src/config.ts at dist/config.js (so dist/embedded/ is beside it).
    const buildConfig = JSON.parse(read('tsconfig.build.json')) as { compilerOptions: { rootDir: string, outDir: string } }
    expect(buildConfig.compilerOptions.rootDir).toBe('src')
    expect(buildConfig.compilerOptions.outDir).toBe('dist')
    expect(existsSync(join(root, 'src/main.ts'))).toBe(true)
  })

  it('installs production dependencies only in the runtime stage and copies the build output', () => {
    const runs = runtimeArgs('RUN')
    const installs = runs.filter(run => /\bnpm (ci|install|i)\b/.test(run))
    expect(installs.length).toBeGreaterThan(0)
    for (const install of installs) expect(install).toMatch(/--omit=dev\b/)
    expect(runtimeArgs('ENV').some(env => /\bNODE_ENV[= ]production\b/.test(env))).toBe(true)
    expect(runtimeArgs('COPY').some(copy => new RegExp(`--from=${build.name ?? '0'}\\s+\\S*dist\\b`).test(copy))).toBe(true)
  })

  it('runs as a non-root user, exposes 8080, checks /healthz and starts dist/main.js', () => {
    const user = runtimeArgs('USER').at(-1)
    expect(user).toBeDefined()
    expect(user!.split(':')[0]).not.toMatch(/^(root|0)$/)
    expect(runtimeArgs('EXPOSE').join(' ').split(/\s+/)).toContain('8080')
    const healthcheck = runtimeArgs('HEALTHCHECK').at(-1) ?? ''
    expect(healthcheck).toMatch(/http:\/\/127\.0\.0\.1:8080\/healthz/)
    expect(healthcheck).toMatch(/\bfetch\(/)
    expect(JSON.parse(runtimeArgs('CMD').at(-1) ?? 'null')).toEqual(['node', 'dist/main.js'])
  })

  it('keeps the build inputs in the context and local files out', () => {
    const ignored = logicalLines(read('.dockerignore'))
    for (const needed of ['src', 'package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json']) {
      expect(ignored).not.toContain(needed)
    }
    expect(ignored).toEqual(expect.arrayContaining(['node_modules', '.git', '.env']))
  })
})

// ---------------------------------------------------------------------------------------------------
interface ComposeService {
  image?: string
  build?: unknown
  command?: string | string[]
  environment?: Record<string, string | number | boolean | null> | string[]
  volumes?: unknown[]
  ports?: unknown[]
  depends_on?: Record<string, { condition?: string }>
  healthcheck?: { test?: unknown }
  cap_add?: string[]
}

function serviceEnv (service: ComposeService): Record<string, string> {
  const env = service.environment ?? {}
  if (Array.isArray(env)) {
    return Object.fromEntries(env.map(entry => { const at = entry.indexOf('='); return at === -1 ? [entry, ''] : [entry.slice(0, at), entry.slice(at + 1)] }))
  }
  return Object.fromEntries(Object.entries(env).map(([key, value]) => [key, value === null ? '' : String(value)]))
}

interface Mount { source: string, target: string }
function serviceMounts (service: ComposeService): Mount[] {
  return (service.volumes ?? []).map(volume => {
    if (typeof volume === 'string') {
      const [source = '', target = ''] = volume.split(':')
      return { source, target }
    }
    const long = asObject(volume)
    return { source: String(long.source ?? ''), target: String(long.target ?? '') }
  })
}

/** The mount whose target holds `path`, and the rest of the path below it. */
function mountFor (service: ComposeService, path: string): { mount: Mount, rest: string } | undefined {
  for (const mount of serviceMounts(service)) {
    if (path === mount.target) return { mount, rest: '' }
    if (path.startsWith(`${mount.target}/`)) return { mount, rest: path.slice(mount.target.length + 1) }
  }
  return undefined
}

const isBindMount = (mount: Mount): boolean => /^[./~]/.test(mount.source)

interface SeededSecret { path: string, fields: Map<string, string | undefined> }

/** `seed_secret <path under mount secret> field=value...` calls, with each value's default when it is `${VAR:-default}`. */
function seededSecrets (script: string): Map<string, SeededSecret> {
  const secrets = new Map<string, SeededSecret>()
  for (const line of logicalLines(script)) {
    const call = /^seed_secret\s+(\S+)\s+(.*)$/.exec(line)
    if (call === null) continue
    const fields = new Map<string, string | undefined>()
    for (const field of call[2]!.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)/g)) {
      const raw = field[2]!.replace(/^"|"$/g, '')
      const fallback = /^\$\{[A-Z0-9_]+:-([^}]*)\}$/.exec(raw)
      fields.set(field[1]!, fallback === null ? raw : fallback[1])
    }
    const path = `secret/${call[1]!}`
    secrets.set(path, { path, fields })
  }
  return secrets
}

/** `path "<glob>" { capabilities = [...] }` blocks of the policy the seed script writes. */
function policyPaths (script: string): Array<{ glob: string, capabilities: string[] }> {
  return [...script.matchAll(/path\s+"([^"]+)"\s*\{\s*capabilities\s*=\s*\[([^\]]*)\]\s*\}/g)]
    .map(match => ({ glob: match[1]!, capabilities: [...match[2]!.matchAll(/"([^"]+)"/g)].map(cap => cap[1]!) }))
}

function policyAllowsRead (policies: Array<{ glob: string, capabilities: string[] }>, path: string): boolean {
  return policies.some(policy => policy.capabilities.includes('read') &&
    (policy.glob.endsWith('*') ? path.startsWith(policy.glob.slice(0, -1)) : path === policy.glob))
}

/** "secret/providers/kivra" (KV v2 mount + path) → the API paths "secret/data/…" and "secret/metadata/…". */
function kvApiPaths (secret: string): { data: string, metadata: string } {
  const [mount, ...rest] = secret.split('/')
  return { data: `${mount!}/data/${rest.join('/')}`, metadata: `${mount!}/metadata/${rest.join('/')}` }
}

/** "vault:<mount>/<path>#<field>" */
function vaultKeyRef (spec: string): { secret: string, field: string } | undefined {
  const match = /^vault:([^#]+)#(.+)$/.exec(spec)
  return match === null ? undefined : { secret: match[1]!, field: match[2]! }
}

describe('docker-compose.yml', () => {
  // Compose honours YAML merge keys (<<: *broker), so parse with them.
  const compose = parseYaml(read('docker-compose.yml'), { merge: true }) as { services: Record<string, ComposeService>, volumes?: Record<string, unknown> }
  const services = compose.services
  const brokers = ['broker-1', 'broker-2']
  const seedScript = read('deploy/compose/seed-vault.sh')
  const seeded = seededSecrets(seedScript)
  const credentialsText = read('deploy/compose/credentials.yaml')
  let scratch: string

  beforeAll(() => { scratch = mkdtempSync(join(tmpdir(), 'cb-compose-')) })
  afterAll(() => { rmSync(scratch, { recursive: true, force: true }) })

  it('runs Redis, a dev-mode Vault and a one-shot seed job', () => {
    expect(services.redis?.image).toMatch(/^redis:7\.4-alpine$/)
    expect(services.redis?.healthcheck?.test).toBeDefined()

    const vault = services.vault!
    expect(vault.image).toMatch(/^hashicorp\/vault:1\.17/)
    expect([vault.command ?? []].flat().join(' ')).toMatch(/\bserver -dev\b/)
    expect(serviceEnv(vault).VAULT_DEV_ROOT_TOKEN_ID).toBeTruthy()
    expect(vault.cap_add).toContain('IPC_LOCK')
    expect(vault.healthcheck?.test).toBeDefined()

    const seed = services['vault-seed']!
    expect(seed.image).toBe(vault.image)
    expect(seed.depends_on?.vault?.condition).toBe('service_healthy')
    // The seed logs in with the dev root token.
    expect(serviceEnv(seed).VAULT_TOKEN).toBe(serviceEnv(vault).VAULT_DEV_ROOT_TOKEN_ID)
    expect(serviceMounts(seed).some(mount => mount.source === './deploy/compose/seed-vault.sh')).toBe(true)
  })

  it.each(brokers)('%s builds the image and waits for healthy Redis and a finished seed', name => {
    const broker = services[name]!
    expect(broker.build).toBe('.')
    expect(broker.depends_on?.redis?.condition).toBe('service_healthy')
    expect(broker.depends_on?.['vault-seed']?.condition).toBe('service_completed_successfully')
    for (const [dependency, { condition }] of Object.entries(broker.depends_on ?? {})) {
      expect(services[dependency], `${name} depends on unknown service ${dependency}`).toBeDefined()
      if (condition === 'service_healthy') expect(services[dependency]!.healthcheck?.test, `${dependency} has no healthcheck`).toBeDefined()
    }
  })

  it('publishes each broker on its own host port, mapped to container port 8080', () => {
    const hostPorts = brokers.map(name => {
      const ports = (services[name]!.ports ?? []).map(String)
      expect(ports).toHaveLength(1)
      const parts = ports[0]!.split(':')
      expect(parts.at(-1)).toBe('8080')
      return parts.at(-2)
    })
    expect(hostPorts).toEqual(['8081', '8082'])
  })

  it('binds every published port to 127.0.0.1 (the example keys never reach the network)', () => {
    const published = Object.entries(services).flatMap(([name, service]) => (service.ports ?? []).map(port => [name, port] as const))
    expect(published.length).toBeGreaterThan(0)
    for (const [name, port] of published) {
      // Short syntax "127.0.0.1:HOST:CONTAINER", or the long one with host_ip.
      if (typeof port === 'string') expect(port, name).toMatch(/^127\.0\.0\.1:\d+:\d+$/)
      else expect(asObject(port).host_ip, name).toBe('127.0.0.1')
    }
  })

  it('runs the provider stand-ins from the broker image, and the brokers wait for them', () => {
    const standIns = services['stand-ins']!
    expect(standIns.build).toBe('.')
    const command = [standIns.command ?? []].flat().map(String)
    expect(command.slice(0, 2)).toEqual(['node', 'dist/embedded/stand-ins/main.js'])
    // dist/embedded/stand-ins/main.js is what tsc makes of this file.
    expect(existsSync(join(root, 'src/embedded/stand-ins/main.ts'))).toBe(true)
    // Reachable from the brokers' containers, not published on the host.
    expect(command.slice(2)).toEqual(['--host', '0.0.0.0'])
    expect(standIns.ports ?? []).toEqual([])
    expect(standIns.healthcheck?.test).toBeDefined()
    // The image's own HEALTHCHECK probes the broker's 8080; the stand-ins' probes one of theirs.
    expect(JSON.stringify(standIns.healthcheck?.test)).toMatch(new RegExp(`127\\.0\\.0\\.1:${fixedStandInPorts.kivra}/`))
    for (const name of brokers) expect(services[name]!.depends_on?.['stand-ins']?.condition).toBe('service_healthy')
  })

  it('points every credential at the stand-in of its provider, which accepts exactly the secret seeded for it', () => {
    const file = parseCredentialsFile(credentialsText, 'deploy/compose/credentials.yaml')
    // What the stand-ins accept: src/embedded/stand-ins/main.ts defaults to the example credentials and secrets.
    const example = parseCredentialsFile(readFileSync(embeddedCredentialsFile, 'utf8'), embeddedCredentialsFile)
    const exampleSecrets = JSON.parse(readFileSync(embeddedSecretsFile, 'utf8')) as Record<string, Record<string, string>>
    for (const credential of file.credentials) {
      expect(standInProviders).toContain(credential.provider)
      const provider = credential.provider as StandInProvider
      expect(credential.base_url, credential.id).toBe(`http://stand-ins:${fixedStandInPorts[provider]}`)
      const accepted = exampleSecrets[example.credentials.find(candidate => candidate.provider === provider)!.secret]!
      expect(Object.fromEntries(seeded.get(credential.secret)!.fields), credential.id).toEqual(accepted)
    }
  })

  it.each(brokers)('%s sets every variable an AppRole, Redis-backed production broker needs, all known to EnvSchema', name => {
    const env = serviceEnv(services[name]!)
    for (const key of Object.keys(env)) expect(envNames, `${key} is not in EnvSchema`).toContain(key)
    expect(env).toMatchObject({ NODE_ENV: 'production', VAULT_AUTH: 'approle' })
    for (const key of ['REDIS_URL', 'VAULT_ADDR', 'VAULT_ROLE_ID_FILE', 'VAULT_SECRET_ID_FILE', 'TOKEN_ENCRYPTION_KEY', 'CREDENTIALS_FILE']) {
      expect(env[key], key).toBeTruthy()
    }
    expect(new URL(env.REDIS_URL!).hostname).toBe('redis')
    expect(new URL(env.VAULT_ADDR!).host).toBe('vault:8200')
    const parsed = EnvSchema.safeParse(env)
    expect(parsed.success, parsed.error?.message).toBe(true)
  })

  it.each(brokers)('%s passes loadConfig with its mounts mapped to the files they carry', name => {
    const broker = services[name]!
    const seed = services['vault-seed']!
    const env = serviceEnv(broker)
    const approleDir = serviceEnv(seed).APPROLE_DIR!
    const writtenBySeed = new Set([...seedScript.matchAll(/^\s*install_login_file\s+(\S+)/gm)].map(match => match[1]!))
    const mapped: Record<string, string> = { ...env }
    for (const key of ['CREDENTIALS_FILE', 'VAULT_ROLE_ID_FILE', 'VAULT_SECRET_ID_FILE']) {
      const found = mountFor(broker, env[key]!)
      expect(found, `${key}=${env[key]!} is not on a mounted volume`).toBeDefined()
      const { mount, rest } = found!
      if (isBindMount(mount)) {
        mapped[key] = resolve(root, mount.source, rest)
      } else {
        // A named volume: the seed job must mount the same volume at APPROLE_DIR and write that file name.
        expect(compose.volumes ?? {}).toHaveProperty(mount.source)
        expect(serviceMounts(seed)).toContainEqual({ source: mount.source, target: approleDir })
        expect(writtenBySeed, `seed-vault.sh does not write ${rest}`).toContain(rest)
        mapped[key] = join(scratch, `${name}-${basename(rest)}`)
        writeFileSync(mapped[key], 'placeholder-written-by-the-seed-job\n')
      }
    }
    const config = loadConfig(mapped, root)
    expect(config.production).toBe(true)
    expect(config.vault?.auth).toBe('approle')
    expect(config.vault?.roleId).toBeTruthy()
    expect(config.vault?.secretId).toBeTruthy()
    expect(config.redis).toMatchObject({ topology: 'single', url: 'redis://redis:6379' })
    expect(config.credentials.length).toBeGreaterThan(0)
  })

  it('has a credentials file that parses with the broker\'s own parser', () => {
    const file = parseCredentialsFile(credentialsText, 'deploy/compose/credentials.yaml')
    expect(file.credentials.length).toBeGreaterThan(0)
    expect(file.callers.length).toBeGreaterThan(0)
    expect(file.credentials.every(credential => credential.environment === 'sandbox')).toBe(true)
    expect(file.credentials.every(credential => credential.allowed_callers.length > 0)).toBe(true)
  })

  it('seeds every secret the compose credentials reference, with the fields each provider needs', () => {
    const file: CredentialsFile = parseCredentialsFile(credentialsText, 'deploy/compose/credentials.yaml')
    // seed_secret writes to the KV v2 mount "secret" that dev mode enables.
    expect(seedScript).toMatch(/vault kv put -mount=secret\b/)
    for (const credential of file.credentials) {
      const secret = seeded.get(credential.secret)
      expect(secret, `seed-vault.sh does not write ${credential.secret}`).toBeDefined()
      for (const field of requiredSecretFields[credential.provider]) {
        expect(secret!.fields.get(field), `${credential.secret} lacks ${field}`).toBeTruthy()
      }
    }
  })

  it('seeds SIR Giving with sandbox-shaped keys', () => {
    const sirGiving = seeded.get('secret/providers/sir-giving')!
    expect(sirGiving.fields.get('secretKey')).toMatch(/^sk_test_/)
    expect(sirGiving.fields.get('publicKey')).toMatch(/^pk_test_/)
    expect(sirGiving.fields.get('hmacSecret')).toMatch(/^[0-9a-f]{64}$/)
    expect(sirGiving.fields.get('webhookSecret')).toMatch(/^whsec_/)
  })

  it('seeds the token encryption key the brokers point at, and lets the AppRole read it and every provider secret', () => {
    // The seed job writes deploy/vault/policy.hcl, mounted where the script reads it.
    expect(seedScript).toMatch(/vault policy write "\$ROLE" "\$\{POLICY_FILE:-\/seed\/policy\.hcl\}"/)
    expect(serviceMounts(services['vault-seed']!)).toContainEqual({ source: './deploy/vault/policy.hcl', target: '/seed/policy.hcl' })
    const policies = policyPaths(read('deploy/vault/policy.hcl'))
    const file = parseCredentialsFile(credentialsText, 'deploy/compose/credentials.yaml')
    const paths = file.credentials.map(credential => credential.secret)
    for (const name of brokers) {
      const ref = vaultKeyRef(serviceEnv(services[name]!).TOKEN_ENCRYPTION_KEY!)
      expect(ref).toBeDefined()
      expect(seeded.get(ref!.secret)?.fields.has(ref!.field), `seed-vault.sh does not write ${ref!.secret}#${ref!.field}`).toBe(true)
      paths.push(ref!.secret)
    }
    for (const path of new Set(paths)) {
      const api = kvApiPaths(path)
      expect(policyAllowsRead(policies, api.data), `policy cannot read ${api.data}`).toBe(true)
      expect(policyAllowsRead(policies, api.metadata), `policy cannot read ${api.metadata}`).toBe(true)
    }
    // Read-only on secrets: the one other capability is update on the token's own renew-self.
    for (const policy of policies) expect(policy.capabilities).toEqual([policy.glob === 'auth/token/renew-self' ? 'update' : 'read'])
    expect(seedScript).toMatch(/vault auth enable approle/)
  })
})

// ---------------------------------------------------------------------------------------------------
interface K8sObject { apiVersion: string, kind: string, metadata: { name: string, labels?: Record<string, string> }, [key: string]: unknown }

describe('deploy/kubernetes', () => {
  const dir = 'deploy/kubernetes'
  const files = readdirSync(join(root, dir)).filter(file => /\.ya?ml$/.test(file)).sort()
  const kustomization = parseYaml(read(`${dir}/kustomization.yaml`)) as {
    resources: string[]
    namespace?: string
    configMapGenerator?: Array<{ name: string, files?: string[], options?: { disableNameSuffixHash?: boolean } }>
    generatorOptions?: { disableNameSuffixHash?: boolean }
  }
  const objects: K8sObject[] = files.filter(file => file !== 'kustomization.yaml').flatMap(file =>
    parseAllDocuments(read(`${dir}/${file}`)).map(doc => {
      expect(doc.errors, file).toEqual([])
      return doc.toJS() as K8sObject
    }).filter(object => object !== null))
  const byKind = (kind: string): K8sObject[] => objects.filter(object => object.kind === kind)
  const one = (kind: string): K8sObject => {
    const found = byKind(kind)
    expect(found, `exactly one ${kind}`).toHaveLength(1)
    return found[0]!
  }

  const deployment = one('Deployment')
  const spec = asObject(deployment.spec)
  const template = asObject(spec.template)
  const podLabels = asObject(asObject(template.metadata).labels) as Record<string, string>
  const podSpec = asObject(template.spec)
  const containers = asArray(podSpec.containers).map(asObject)
  const container = containers[0]!
  const containerEnv = asArray(container.env).map(asObject)
  const envValue = (name: string): string | undefined => {
    const entry = containerEnv.find(env => env.name === name)
    return entry?.value === undefined ? undefined : String(entry.value)
  }
  const namedPorts = new Map(asArray(container.ports).map(asObject).map(port => [String(port.name), Number(port.containerPort)]))
  const resolvePort = (port: unknown): number => (typeof port === 'number' ? port : namedPorts.get(String(port)) ?? Number.NaN)
  const mounts = asArray(container.volumeMounts).map(asObject)
  const volumes = asArray(podSpec.volumes).map(asObject)
  const selects = (selector: unknown): boolean => {
    const matchLabels = asObject(asObject(selector).matchLabels)
    return Object.keys(matchLabels).length > 0 && Object.entries(matchLabels).every(([key, value]) => podLabels[key] === value)
  }

  it('lists every manifest in the kustomization', () => {
    expect([...kustomization.resources].sort()).toEqual(files.filter(file => file !== 'kustomization.yaml'))
  })

  it('runs three replicas whose selector matches the pod template', () => {
    expect(spec.replicas).toBe(3)
    expect(selects(spec.selector)).toBe(true)
    expect(containers).toHaveLength(1)
  })

  it('probes liveness on /healthz and readiness on /readyz at port 8080', () => {
    const liveness = asObject(asObject(container.livenessProbe).httpGet)
    const readiness = asObject(asObject(container.readinessProbe).httpGet)
    expect(liveness.path).toBe('/healthz')
    expect(readiness.path).toBe('/readyz')
    expect(resolvePort(liveness.port)).toBe(8080)
    expect(resolvePort(readiness.port)).toBe(8080)
    const port = envValue('PORT')
    if (port !== undefined) expect(Number(port)).toBe(8080)
  })

  it('runs non-root with a read-only root filesystem, no privilege escalation and no capabilities', () => {
    const pod = asObject(podSpec.securityContext)
    const own = asObject(container.securityContext)
    expect(own.runAsNonRoot ?? pod.runAsNonRoot).toBe(true)
    // The image's USER is a name (node); the kubelet can only verify runAsNonRoot with a numeric uid.
    expect(Number(own.runAsUser ?? pod.runAsUser)).toBeGreaterThan(0)
    expect(own.readOnlyRootFilesystem).toBe(true)
    expect(own.allowPrivilegeEscalation).toBe(false)
    expect(asObject(own.capabilities).drop).toEqual(['ALL'])
  })

  it('sets resource requests and limits', () => {
    const resources = asObject(container.resources)
    for (const kind of ['requests', 'limits']) {
      expect(asObject(resources[kind]).memory, kind).toBeTruthy()
    }
    expect(asObject(resources.requests).cpu).toBeTruthy()
  })

  it('runs with a young generation sized for the broker (the image\'s NODE_OPTIONS, or the pod\'s) that Node accepts and that fits the memory limit', () => {
    const podEntry = containerEnv.find(env => env.name === 'NODE_OPTIONS')
    // A pod's own NODE_OPTIONS replaces the image's; a literal one, so that what it sets can be checked here.
    if (podEntry !== undefined) expect(podEntry.value, 'NODE_OPTIONS in the pod as a literal value').toBeTypeOf('string')
    const nodeOptions = envValue('NODE_OPTIONS') ?? runtimeEnv(read('Dockerfile')).NODE_OPTIONS
    expect(nodeOptions, 'NODE_OPTIONS in the Dockerfile or the pod').toBeDefined()
    // V8 takes the last of a flag given twice.
    const megabytes = (flag: string): number | undefined => {
      const value = [...nodeOptions!.matchAll(new RegExp(`--${flag}=(\\d+)(?=\\s|$)`, 'g'))].at(-1)?.[1]
      return value === undefined ? undefined : Number(value)
    }
    const semiSpace = megabytes('max-semi-space-size')
    // Left to Node, the young generation follows the container's limit: 1 MB semi-spaces under 256Mi (Dockerfile).
    expect(semiSpace, '--max-semi-space-size').toBeGreaterThanOrEqual(8)
    // Node refuses (exit 9) a flag it does not take from NODE_OPTIONS: the container would not start. (This
    // runs the test's Node; the image's is Node 24, whose NODE_OPTIONS takes the same heap flags.)
    const started = spawnSync(process.execPath, ['-e', 'process.exit(0)'], { env: { PATH: process.env.PATH ?? '', NODE_OPTIONS: nodeOptions }, encoding: 'utf8' })
    expect(started.stderr).toBe('')
    expect(started.status).toBe(0)
    // A young generation of three semi-spaces, 64 MB for code and native memory (about 45–50 MB measured:
    // RSS minus heap of the compiled broker, bench/README.md) and an old generation of at least 64 MB
    // (the broker's live heap is 25–40 MB), or the one set, within the limit.
    const limitMiB = memoryQuantityBytes(String(asObject(asObject(container.resources).limits).memory)) / 2 ** 20
    expect(Math.max(64, megabytes('max-old-space-size') ?? 0) + 3 * semiSpace! + 64).toBeLessThanOrEqual(limitMiB)
  })

  it('uses only environment variables the broker knows, with valid values', () => {
    // NODE_OPTIONS is Node's own (the heap sizes, see above), not the broker's.
    const brokers = containerEnv.filter(env => !nodeOwnEnv.has(String(env.name)))
    for (const env of brokers) expect(envNames, `${String(env.name)} is not in EnvSchema`).toContain(env.name)
    const literal = Object.fromEntries(brokers.filter(env => env.value !== undefined).map(env => [String(env.name), String(env.value)]))
    const parsed = EnvSchema.safeParse(literal)
    expect(parsed.success, parsed.error?.message).toBe(true)
    expect(literal).toMatchObject({ NODE_ENV: 'production', VAULT_AUTH: 'kubernetes' })
    for (const name of ['REDIS_URL', 'VAULT_ADDR', 'VAULT_K8S_ROLE', 'TOKEN_ENCRYPTION_KEY', 'CREDENTIALS_FILE']) {
      expect(containerEnv.some(env => env.name === name), name).toBe(true)
    }
  })

  it('logs in to Vault with a projected service account token (audience vault) at VAULT_K8S_TOKEN_PATH', () => {
    const projected = volumes.find(volume => asArray(asObject(volume.projected).sources).some(source => asObject(source).serviceAccountToken !== undefined))
    expect(projected).toBeDefined()
    const token = asObject(asArray(asObject(projected!.projected).sources).map(asObject).find(source => source.serviceAccountToken !== undefined)!.serviceAccountToken)
    expect(token.audience).toBe('vault')
    const mount = mounts.find(m => m.name === projected!.name)
    expect(mount).toBeDefined()
    expect(envValue('VAULT_K8S_TOKEN_PATH')).toBe(posix.join(String(mount!.mountPath), String(token.path)))
  })

  it('reads a credentials file from a generated, hashed ConfigMap (an edit rolls the pods) that parses with the broker\'s own parser', () => {
    const credentialsFile = envValue('CREDENTIALS_FILE')!
    const mount = mounts.find(m => String(m.mountPath) === posix.dirname(credentialsFile))
    expect(mount, `no volume mounted at ${posix.dirname(credentialsFile)}`).toBeDefined()
    const volume = volumes.find(v => v.name === mount!.name)!
    const configMapName = asObject(volume.configMap).name
    // No static ConfigMap: kustomize generates it with a content hash in its name and rewrites the volume.
    expect(byKind('ConfigMap')).toEqual([])
    const generator = (kustomization.configMapGenerator ?? []).find(entry => entry.name === configMapName)
    expect(generator, `configMapGenerator ${String(configMapName)}`).toBeDefined()
    expect(generator!.options?.disableNameSuffixHash).not.toBe(true)
    expect(kustomization.generatorOptions?.disableNameSuffixHash).not.toBe(true)
    const source = (generator!.files ?? []).map(entry => entry.split('=')).find(([key]) => key === posix.basename(credentialsFile))?.[1]
    expect(source, `${posix.basename(credentialsFile)}=<file> in the generator`).toBeDefined()
    const text = read(`${dir}/${source!}`)
    const file = parseCredentialsFile(text, credentialsFile)
    expect(file.credentials.length).toBeGreaterThan(0)
    expect(file.credentials.every(credential => credential.environment === 'production')).toBe(true)
  })

  it('gives the app time to drain before SIGKILL', () => {
    // src/main.ts passes this delay to close-with-grace (whose own default is 10 s).
    const delay = /shutdownDelayMs\s*=\s*([\d_]+)/.exec(read('src/main.ts'))?.[1]
    const shutdownSeconds = delay === undefined ? 10 : Number(delay.replace(/_/g, '')) / 1000
    const preStop = asArray(asObject(asObject(asObject(container.lifecycle).preStop).exec).command).map(String)
    const preStopSeconds = preStop[0] === 'sleep' ? Number(preStop[1]) : 0
    expect(Number(podSpec.terminationGracePeriodSeconds)).toBeGreaterThan(shutdownSeconds + preStopSeconds)
  })

  it('spreads replicas across zones and nodes', () => {
    const spread = asArray(podSpec.topologySpreadConstraints).map(asObject)
    const antiAffinity = asObject(asObject(podSpec.affinity).podAntiAffinity)
    expect(spread.length + Object.keys(antiAffinity).length).toBeGreaterThan(0)
    for (const constraint of spread) expect(selects(constraint.labelSelector)).toBe(true)
  })

  it('has a Service, a PodDisruptionBudget and a NetworkPolicy selecting the pods, and their ServiceAccount', () => {
    const service = one('Service')
    expect(selects({ matchLabels: asObject(service.spec).selector })).toBe(true)
    const servicePorts = asArray(asObject(service.spec).ports).map(asObject)
    expect(servicePorts.some(port => resolvePort(port.targetPort ?? port.port) === 8080)).toBe(true)

    const pdb = asObject(one('PodDisruptionBudget').spec)
    expect(selects(pdb.selector)).toBe(true)
    expect(pdb.minAvailable === 2 || pdb.maxUnavailable === 1).toBe(true)

    expect(selects(asObject(one('NetworkPolicy').spec).podSelector)).toBe(true)
    expect(one('ServiceAccount').metadata.name).toBe(podSpec.serviceAccountName)
  })

  it('lets clients reach port 8080 and the broker reach DNS, Redis, Vault and HTTPS', () => {
    const policy = asObject(one('NetworkPolicy').spec)
    expect(policy.policyTypes).toEqual(expect.arrayContaining(['Ingress', 'Egress']))
    const ingressPorts = asArray(policy.ingress).flatMap(rule => asArray(asObject(rule).ports)).map(port => resolvePort(asObject(port).port))
    expect(ingressPorts).toContain(8080)
    for (const rule of asArray(policy.ingress).map(asObject)) expect(asArray(rule.from).length, 'ingress from anywhere').toBeGreaterThan(0)
    const egressPorts = asArray(policy.egress).flatMap(rule => asArray(asObject(rule).ports)).map(port => Number(asObject(port).port))
    expect(egressPorts).toEqual(expect.arrayContaining([53, 6379, 8200, 443]))
  })

  it('allows DNS to kube-dns and to NodeLocal DNSCache (169.254.20.10), over UDP and TCP', () => {
    const policy = asObject(one('NetworkPolicy').spec)
    const dns = asArray(policy.egress).map(asObject).filter(rule => asArray(rule.ports).some(port => Number(asObject(port).port) === 53))
    expect(dns).toHaveLength(1)
    const rule = dns[0]!
    expect(asArray(rule.ports).map(port => `${String(asObject(port).protocol)}/${Number(asObject(port).port)}`).sort()).toEqual(['TCP/53', 'UDP/53'])
    const peers = asArray(rule.to).map(asObject)
    expect(peers.some(peer => asObject(asObject(peer.podSelector).matchLabels)['k8s-app'] === 'kube-dns')).toBe(true)
    expect(peers.some(peer => asObject(peer.ipBlock).cidr === '169.254.20.10/32')).toBe(true)
    expect(read(`${dir}/networkpolicy.yaml`)).toMatch(/NodeLocal DNSCache/)
  })

  it('has a PodMonitor (deploy/kubernetes/monitoring) that scrapes /metrics of these pods as job "credential-broker"', () => {
    const monitoring = parseYaml(read(`${dir}/monitoring/kustomization.yaml`)) as { resources: string[], namespace?: string }
    expect([...monitoring.resources].sort()).toEqual(['podmonitor.yaml', 'prometheusrule.yaml'])
    expect(monitoring.namespace).toBe(kustomization.namespace)
    const podMonitor = parseYaml(read(`${dir}/monitoring/podmonitor.yaml`)) as K8sObject
    expect(podMonitor.kind).toBe('PodMonitor')
    const monitorSpec = asObject(podMonitor.spec)
    expect(selects(monitorSpec.selector)).toBe(true)
    const endpoints = asArray(monitorSpec.podMetricsEndpoints).map(asObject)
    expect(endpoints).toHaveLength(1)
    expect(resolvePort(endpoints[0]!.port)).toBe(8080)
    expect(endpoints[0]!.path).toBe('/metrics')
    // The job label comes from a pod label; BrokerAbsent selects up{job="credential-broker"}.
    const job = podLabels[String(monitorSpec.jobLabel)]
    expect(job).toBe('credential-broker')
    expect(read('deploy/prometheus/alerts.yaml')).toContain(`up{job="${job}"}`)
  })
})

// ---------------------------------------------------------------------------------------------------
interface AlertRule { alert: string, expr: string, for?: string, labels?: Record<string, string>, annotations?: Record<string, string> }

describe('deploy/prometheus/alerts.yaml', () => {
  const rulesFile = parseYaml(read('deploy/prometheus/alerts.yaml')) as { groups: Array<{ name: string, rules: AlertRule[] }> }
  const rules = rulesFile.groups.flatMap(group => group.rules)
  const alertNames = rules.map(rule => rule.alert)
  const runbookBase = rules[0]?.annotations?.runbook_url?.split('#')[0] ?? ''

  // What createMetrics() really registers, and each metric's label names as they appear in a scrape.
  const registry = new Registry()
  const metrics = createMetrics(registry)
  metrics.initCredential({ id: 'kivra-sandbox', provider: 'kivra' })
  metrics.tokenRequestDuration.observe({ credential: 'kivra-sandbox' }, 0.0002)
  metrics.refreshDuration.observe({ provider: 'kivra' }, 0.2)
  metrics.grantExpiry.set({ credential: 'kivra-sandbox' }, 3600)
  metrics.grantLifetime.set({ credential: 'kivra-sandbox' }, 28_800)
  metrics.grantRefreshDue.set({ credential: 'kivra-sandbox' }, 18_000)
  metrics.secretRolledBack.set({ credential: 'kivra-sandbox' }, 0)
  metrics.circuitBreakerState.set({ provider: 'kivra', endpoint: 'kivra:sandbox' }, 0)
  metrics.redisUp.set({ kind: 'redis', embedded: 'false' }, 1)
  metrics.vaultAuthenticated.set({ kind: 'vault', embedded: 'false' }, 1)
  const series = new Map<string, Set<string>>()
  const allowedValues: Record<string, readonly string[]> = { result: [...tokenRequestResults, ...refreshResults], reason: refreshReasons }

  beforeAll(async () => {
    for (const metric of await registry.getMetricsAsJSON()) {
      const labels = new Set(metric.values.flatMap(value => Object.keys(value.labels)).filter(label => label !== 'le'))
      series.set(metric.name, labels)
      if (['histogram', 'summary'].includes(String(metric.type))) {
        for (const suffix of ['_bucket', '_sum', '_count']) series.set(metric.name + suffix, labels)
      }
    }
  })

  it('has the alerts the README runbook describes', () => {
    expect(alertNames).toEqual(expect.arrayContaining([
      'CredentialCloseToExpiry', 'RefreshesFailing', 'PermanentCredentialRejection', 'VaultUnauthenticated',
      'RedisDown', 'BrokerDegraded', 'CircuitBreakerOpen', 'BrokerAbsent', 'CredentialOnPreviousSecret'
    ]))
    expect(new Set(alertNames).size).toBe(alertNames.length)
  })

  it.each(rules.map(rule => [rule.alert, rule] as const))('%s queries only metrics and labels that createMetrics() registers', (_name, rule) => {
    const used = [...rule.expr.matchAll(/\b(credential_broker_[a-z0-9_]+)\b/g)].map(match => match[1]!)
    // Prometheus' own `up` (per scrape target) is the one other series a rule may use: BrokerAbsent.
    const usesUp = /\bup\{job="credential-broker"\}/.test(rule.expr)
    expect(used.length + (usesUp ? 1 : 0)).toBeGreaterThan(0)
    for (const name of used) expect([...series.keys()], `${name} is not registered`).toContain(name)

    for (const selector of rule.expr.matchAll(/\b(credential_broker_[a-z0-9_]+)\{([^}]*)\}/g)) {
      const labels = series.get(selector[1]!)!
      for (const matcher of selector[2]!.matchAll(/(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"/g)) {
        const [, label, , value] = matcher
        expect(labels, `${selector[1]!} has no label ${label!}`).toContain(label)
        const allowed = allowedValues[label!]
        if (allowed !== undefined) for (const alternative of value!.split('|')) expect(allowed).toContain(alternative)
      }
    }

    // Labels the annotations print must survive the query's aggregation.
    const metricLabels = new Set(used.flatMap(name => [...series.get(name)!]))
    const grouped = [...rule.expr.matchAll(/\bby\s*\(([^)]*)\)/g)].flatMap(match => match[1]!.split(',').map(label => label.trim()))
    for (const label of grouped) expect(metricLabels, `by (${label})`).toContain(label)
    const available = grouped.length > 0 || /\babsent\(/.test(rule.expr) ? new Set(grouped) : new Set([...metricLabels, 'instance', 'job'])
    for (const [key, text] of Object.entries(rule.annotations ?? {})) {
      for (const reference of text.matchAll(/\$labels\.(\w+)/g)) expect(available, `${key} uses $labels.${reference[1]!}`).toContain(reference[1])
    }
  })

  it.each(rules.map(rule => [rule.alert, rule] as const))('%s has a severity, a summary, a description and a README runbook', (name, rule) => {
    expect(['critical', 'warning', 'info']).toContain(rule.labels?.severity)
    expect(rule.annotations?.summary).toBeTruthy()
    expect(rule.annotations?.description).toBeTruthy()
    expect(rule.annotations?.runbook_url).toBe(`${runbookBase}#alert-${name.toLowerCase()}`)
    if (rule.for !== undefined) expect(rule.for).toMatch(/^\d+[smhd]$/)
  })

  it('links every runbook_url to one absolute, documented base (the README says how to change it)', () => {
    expect(runbookBase).toMatch(/^https:\/\/[^#\s]+$/)
    expect(new Set(rules.map(rule => rule.annotations?.runbook_url?.split('#')[0]))).toEqual(new Set([runbookBase]))
    expect(read('README.md')).toContain(runbookBase)
    expect(read('README.md')).toMatch(/RUNBOOK_BASE_URL=\S+ npm run alerts/)
  })

  it('keeps the PrometheusRule of deploy/kubernetes/monitoring generated from these rules', () => {
    const rule = parseYaml(read('deploy/kubernetes/monitoring/prometheusrule.yaml')) as K8sObject & { spec: { groups: unknown } }
    expect(rule.apiVersion).toBe('monitoring.coreos.com/v1')
    expect(rule.kind).toBe('PrometheusRule')
    // Drift (an edit to alerts.yaml without `npm run alerts`) fails here.
    expect(rule.spec.groups).toEqual(rulesFile.groups)
  })

  it('uses the thresholds the platform team agreed on', () => {
    const byName = new Map(rules.map(rule => [rule.alert, rule]))
    expect(byName.get('CredentialCloseToExpiry')).toMatchObject({ for: '2m' })
    // Relative to the lifetime (under 10 % left), and only once the planned refresh has passed.
    expect(byName.get('CredentialCloseToExpiry')!.expr).toMatch(/credential_broker_grant_expiry_seconds\s*\/\s*credential_broker_grant_lifetime_seconds\)\s*<\s*0\.1\b/)
    expect(byName.get('CredentialCloseToExpiry')!.expr).toMatch(/credential_broker_grant_refresh_due_seconds\)\s*<\s*0\b/)
    expect(byName.get('RefreshesFailing')!.expr).toMatch(/\[15m\]/)
    expect(byName.get('RefreshesFailing')!.expr).toMatch(/result="success"/)
    expect(byName.get('PermanentCredentialRejection')!.expr).toMatch(/result="permanent_error"/)
    expect(byName.get('VaultUnauthenticated')).toMatchObject({ for: '5m' })
    expect(byName.get('VaultUnauthenticated')!.expr).toMatch(/credential_broker_vault_authenticated\{embedded="false"\}\s*==\s*0/)
    expect(byName.get('RedisDown')).toMatchObject({ for: '2m' })
    expect(byName.get('RedisDown')!.expr).toMatch(/credential_broker_redis_up\{embedded="false"\}\s*==\s*0/)
    expect(byName.get('BrokerDegraded')).toMatchObject({ for: '10m' })
    expect(byName.get('BrokerDegraded')!.expr).toMatch(/credential_broker_readiness_state\s*<\s*2/)
    // Never closed in 5 minutes (a failing breaker alternates open and half-open between scrapes).
    expect(byName.get('CircuitBreakerOpen')!.expr).toMatch(/min by \(provider, endpoint\) \(min_over_time\(credential_broker_circuit_breaker_state\[5m\]\)\)\s*>=\s*1/)
    expect(byName.get('CredentialOnPreviousSecret')).toMatchObject({ for: '5m' })
    expect(byName.get('BrokerAbsent')).toMatchObject({ for: '5m', labels: { severity: 'critical' } })
    expect(byName.get('BrokerAbsent')!.expr).toBe('absent(up{job="credential-broker"} == 1)')
  })
})

// ---------------------------------------------------------------------------------------------------
describe('deploy/vault/policy.hcl', () => {
  const policies = policyPaths(read('deploy/vault/policy.hcl'))
  const deployment = parseAllDocuments(read('deploy/kubernetes/deployment.yaml')).map(doc => doc.toJS() as K8sObject).find(object => object.kind === 'Deployment')!
  const env = asArray(asObject(asArray(asObject(asObject(asObject(deployment.spec).template).spec).containers)[0]).env).map(asObject)
  const credentials = parseCredentialsFile(read('deploy/kubernetes/config/credentials.yaml'), 'deploy/kubernetes/config/credentials.yaml')
  const keyRef = vaultKeyRef(String(env.find(entry => entry.name === 'TOKEN_ENCRYPTION_KEY')?.value ?? ''))

  /** What the broker of deploy/kubernetes asks Vault for, and the capability each needs. */
  const needed: Array<{ path: string, capability: string }> = [
    ...[...new Set([...credentials.credentials.map(credential => credential.secret), keyRef!.secret])].flatMap(secret => {
      const api = kvApiPaths(secret)
      return [{ path: api.data, capability: 'read' }, { path: api.metadata, capability: 'read' }]
    }),
    { path: 'auth/token/lookup-self', capability: 'read' },
    { path: 'auth/token/renew-self', capability: 'update' }
  ]
  const matches = (glob: string, path: string): boolean => glob.endsWith('*') ? path.startsWith(glob.slice(0, -1)) : path === glob

  it('allows everything the Kubernetes deployment reads: KV v2 data and metadata of each secret and the key, token lookup-self and renew-self', () => {
    expect(keyRef).toBeDefined()
    for (const { path, capability } of needed) {
      expect(policies.some(policy => matches(policy.glob, path) && policy.capabilities.includes(capability)), `${capability} ${path}`).toBe(true)
    }
  })

  it('allows nothing more: each rule serves a path the broker uses, with only the capability it needs', () => {
    for (const policy of policies) {
      const served = needed.filter(need => matches(policy.glob, need.path))
      expect(served.length, policy.glob).toBeGreaterThan(0)
      expect(policy.capabilities, policy.glob).toEqual([...new Set(served.map(need => need.capability))])
    }
  })

  it('is referenced from the README and the ServiceAccount', () => {
    expect(read('README.md')).toContain('deploy/vault/policy.hcl')
    expect(read('deploy/kubernetes/serviceaccount.yaml')).toContain('deploy/vault/policy.hcl')
  })
})

// The parsing helpers above decide what the checks see; a helper that matched nothing would make them pass vacuously.
describe('artifact test helpers', () => {
  it('maps a KV v2 secret to its data and metadata API paths', () => {
    expect(kvApiPaths('secret/providers/kivra')).toEqual({ data: 'secret/data/providers/kivra', metadata: 'secret/metadata/providers/kivra' })
  })

  it('reads seed_secret calls across continued lines, with the defaults of ${VAR:-default}', () => {
    const secrets = seededSecrets('seed_secret providers/x \\\n  a="${A:-one}" \\\n  b=two\n# seed_secret providers/y c=3\n')
    expect([...secrets.keys()]).toEqual(['secret/providers/x'])
    expect(Object.fromEntries(secrets.get('secret/providers/x')!.fields)).toEqual({ a: 'one', b: 'two' })
  })

  it('matches policy globs the way Vault does for a trailing *', () => {
    const policies = [{ glob: 'secret/data/providers/*', capabilities: ['read'] }]
    expect(policyAllowsRead(policies, 'secret/data/providers/kivra')).toBe(true)
    expect(policyAllowsRead(policies, 'secret/data/broker/token-key')).toBe(false)
  })
})
