import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { embeddedCredentialsFile, loadConfig, parseCredentialsFile } from '../src/config.js'
import { tempFile } from './support/app.js'
import { ConfigError } from '../src/errors.js'

const key = Buffer.alloc(32, 7).toString('base64')
const validFile = `
callers:
  - id: billing
    api_key_sha256: "${'a'.repeat(64)}"
credentials:
  - id: kivra-production
    provider: kivra
    environment: production
    secret: secret/providers/kivra
    allowed_callers: [billing]
`

function problemsOf (run: () => unknown): string[] {
  try {
    run()
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems]
    throw err
  }
  throw new Error('expected a ConfigError')
}

function fileProblems (yaml: string, name = 'credentials.yaml'): string[] {
  return problemsOf(() => parseCredentialsFile(yaml, name))
}

describe('environment', () => {
  const base = { CREDENTIALS_FILE: tempFile('c.yaml', validFile) }

  it('applies the documented defaults', () => {
    const config = loadConfig(base)
    expect(config.port).toBe(8080)
    expect(config.host).toBe('0.0.0.0')
    expect(config.logLevel).toBe('info')
    expect(config.redis).toBeUndefined()
    expect(config.vault).toBeUndefined()
    expect(config.credentials[0]?.refresh).toEqual({ ratio: 0.75, margin_seconds: 300, jitter_ratio: 0.05 })
  })

  it('returns a deeply frozen config', () => {
    const config = loadConfig(base)
    expect(Object.isFrozen(config)).toBe(true)
    expect(Object.isFrozen(config.credentials[0])).toBe(true)
    expect(() => { (config.credentials as unknown as unknown[]).push({}) }).toThrow(TypeError)
  })

  it.each([
    [{ PORT: 'eighty' }, /^PORT: expected a port number/],
    [{ PORT: '70000' }, /^PORT: expected 0-65535/],
    [{ LOG_LEVEL: 'loud' }, /^LOG_LEVEL: .*"fatal"/],
    [{ REDIS_URL: 'http://localhost:6379' }, /^REDIS_URL: expected a redis:\/\/ or rediss:\/\/ URL/],
    [{ REDIS_KEY_PREFIX: 'has space' }, /^REDIS_KEY_PREFIX: expected 1-32 characters/],
    [{ VAULT_ADDR: 'vault:8200' }, /^VAULT_ADDR: expected an http\(s\) URL/],
    [{ VAULT_AUTH: 'ldap' }, /^VAULT_AUTH: .*"approle"/]
  ])('rejects %o with one clear line', (env, expected) => {
    const problems = problemsOf(() => loadConfig({ ...base, ...env }))
    expect(problems).toHaveLength(1)
    expect(problems[0]).toMatch(expected)
  })

  it('reports every Vault auth problem of the chosen method', () => {
    expect(problemsOf(() => loadConfig({ ...base, VAULT_ADDR: 'http://127.0.0.1:8200' })))
      .toEqual([expect.stringMatching(/^VAULT_TOKEN: required when VAULT_AUTH=token/)])
    expect(problemsOf(() => loadConfig({ ...base, VAULT_ADDR: 'http://127.0.0.1:8200', VAULT_AUTH: 'approle' })))
      .toEqual([expect.stringMatching(/^VAULT_ROLE_ID: required/), expect.stringMatching(/^VAULT_SECRET_ID: required/)])
    expect(problemsOf(() => loadConfig({ ...base, VAULT_ADDR: 'http://127.0.0.1:8200', VAULT_AUTH: 'kubernetes' })))
      .toEqual([expect.stringMatching(/^VAULT_K8S_ROLE: required/)])
  })

  it('reads AppRole material from _FILE variables, and names an unreadable one', () => {
    const config = loadConfig({ ...base, VAULT_ADDR: 'http://127.0.0.1:8200', VAULT_AUTH: 'approle', VAULT_ROLE_ID_FILE: tempFile('role', 'role-123\n'), VAULT_SECRET_ID: 'sid' })
    expect(config.vault?.roleId).toBe('role-123')
    expect(problemsOf(() => loadConfig({ ...base, VAULT_ADDR: 'http://127.0.0.1:8200', VAULT_AUTH: 'approle', VAULT_ROLE_ID_FILE: '/nonexistent/role', VAULT_SECRET_ID: 'sid' })))
      .toEqual([expect.stringMatching(/^VAULT_ROLE_ID_FILE: cannot read "\/nonexistent\/role" \(ENOENT\)/)])
  })

  it('requires a shared encryption key with Redis and checks its length', () => {
    expect(problemsOf(() => loadConfig({ ...base, REDIS_URL: 'redis://127.0.0.1:6379' })))
      .toEqual([expect.stringMatching(/^TOKEN_ENCRYPTION_KEY: required with Redis \(REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES\)/)])
    expect(problemsOf(() => loadConfig({ ...base, TOKEN_ENCRYPTION_KEY: Buffer.alloc(16).toString('base64') })))
      .toEqual([expect.stringMatching(/^TOKEN_ENCRYPTION_KEY: key 1 is not 32 bytes of base64 \(got 16 bytes\)/)])
    expect(loadConfig({ ...base, REDIS_URL: 'redis://127.0.0.1:6379', TOKEN_ENCRYPTION_KEY: `new:${key},old:${key}` }).redis)
      .toEqual({ topology: 'single', url: 'redis://127.0.0.1:6379', keyPrefix: 'cb', username: undefined, password: undefined, tls: undefined })
    expect(problemsOf(() => loadConfig({ ...base, TOKEN_ENCRYPTION_KEY: 'vault:secret/broker/key#keys' })))
      .toEqual([expect.stringMatching(/^TOKEN_ENCRYPTION_KEY: a vault: key needs VAULT_ADDR/)])
  })

  it('names an unreadable credentials file', () => {
    expect(problemsOf(() => loadConfig({ CREDENTIALS_FILE: '/nonexistent/credentials.yaml' })))
      .toEqual([expect.stringMatching(/^CREDENTIALS_FILE: cannot read "\/nonexistent\/credentials.yaml" \(ENOENT\)/)])
  })

  it('falls back to the example credentials and secrets outside production', () => {
    const config = loadConfig({}, tempFile('x', '').replace(/\/x$/, ''))
    expect(config.usingExampleCredentials).toBe(true)
    expect(config.credentialsFile).toBe(embeddedCredentialsFile)
    expect(config.usingExampleSecrets).toBe(true)
  })

  it('refuses the embedded store, secrets, example file and generated key in production, all at once', () => {
    const problems = problemsOf(() => loadConfig({ NODE_ENV: 'production' }, tempFile('x', '').replace(/\/x$/, '')))
    expect(problems).toEqual([
      expect.stringMatching(/^CREDENTIALS_FILE: required when NODE_ENV=production/),
      expect.stringMatching(/^REDIS_URL: required when NODE_ENV=production/),
      expect.stringMatching(/^VAULT_ADDR: required when NODE_ENV=production/),
      expect.stringMatching(/^TOKEN_ENCRYPTION_KEY: required with Redis \(.*\) or NODE_ENV=production/)
    ])
  })

  it('says that a SECRETS_FILE is refused in production, not only that Vault is missing', () => {
    const problems = problemsOf(() => loadConfig({ ...base, NODE_ENV: 'production', REDIS_URL: 'rediss://redis:6380', TOKEN_ENCRYPTION_KEY: key, SECRETS_FILE: tempFile('secrets.json', '{}') }))
    expect(problems).toEqual(['VAULT_ADDR: required when NODE_ENV=production; the embedded file secret source is for local use only (SECRETS_FILE is set: it is refused in production)'])
  })

  it('accepts a complete production configuration', () => {
    const config = loadConfig({ ...base, NODE_ENV: 'production', REDIS_URL: 'rediss://redis:6380', VAULT_ADDR: 'https://vault:8200', VAULT_TOKEN: 'x', TOKEN_ENCRYPTION_KEY: key })
    expect(config.production).toBe(true)
    expect(config.secretsFile).toBeUndefined()
  })
})

describe('Redis topology', () => {
  const base = { CREDENTIALS_FILE: tempFile('c.yaml', validFile), TOKEN_ENCRYPTION_KEY: key }
  const caFile = tempFile('ca.pem', '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n')

  it('reads one node from REDIS_URL, with credentials and TLS applied from their own variables', () => {
    expect(loadConfig({ ...base, REDIS_URL: 'redis://10.0.0.5:6380', REDIS_USERNAME: 'broker', REDIS_PASSWORD: 'pw', REDIS_TLS: 'true', REDIS_CACERT: caFile }).redis).toEqual({
      topology: 'single', url: 'redis://10.0.0.5:6380', keyPrefix: 'cb', username: 'broker', password: 'pw', tls: { ca: readFileSync(caFile, 'utf8') }
    })
    expect(loadConfig({ ...base, REDIS_URL: 'rediss://redis.internal:6380' }).redis?.tls).toEqual({ ca: undefined })
  })

  it('reads a Sentinel group: sentinels, master name and both passwords, keeping the passwords out of env', () => {
    const config = loadConfig({ ...base, REDIS_SENTINELS: 'sentinel-0.redis:26379, sentinel-1.redis:26379,[::1]:26380', REDIS_SENTINEL_MASTER: 'mymaster', REDIS_SENTINEL_PASSWORD: 'spw', REDIS_PASSWORD: 'pw' })
    expect(config.redis).toEqual({
      topology: 'sentinel',
      sentinels: [{ host: 'sentinel-0.redis', port: 26379 }, { host: 'sentinel-1.redis', port: 26379 }, { host: '::1', port: 26380 }],
      masterName: 'mymaster',
      sentinelPassword: 'spw',
      keyPrefix: 'cb',
      username: undefined,
      password: 'pw',
      tls: undefined
    })
  })

  it('reads Redis Cluster seed nodes', () => {
    expect(loadConfig({ ...base, REDIS_CLUSTER_NODES: '10.0.0.1:7000,10.0.0.2:7000', REDIS_KEY_PREFIX: 'cbx' }).redis).toEqual({
      topology: 'cluster', nodes: [{ host: '10.0.0.1', port: 7000 }, { host: '10.0.0.2', port: 7000 }], keyPrefix: 'cbx', username: undefined, password: undefined, tls: undefined
    })
  })

  it('accepts exactly one topology, naming the ones set', () => {
    expect(problemsOf(() => loadConfig({ ...base, REDIS_URL: 'redis://r:6379', REDIS_CLUSTER_NODES: 'r:7000' })))
      .toEqual(['REDIS_URL, REDIS_CLUSTER_NODES: set exactly one of REDIS_URL (one node), REDIS_SENTINELS (Sentinel) or REDIS_CLUSTER_NODES (Cluster)'])
    expect(problemsOf(() => loadConfig({ ...base, REDIS_SENTINELS: 's:26379', REDIS_SENTINEL_MASTER: 'm', REDIS_CLUSTER_NODES: 'r:7000' })))
      .toEqual([expect.stringMatching(/^REDIS_SENTINELS, REDIS_CLUSTER_NODES: set exactly one of/)])
  })

  it.each([
    [{ REDIS_SENTINELS: 's:26379' }, /^REDIS_SENTINEL_MASTER: required with REDIS_SENTINELS/],
    [{ REDIS_SENTINELS: 's:26379,nope', REDIS_SENTINEL_MASTER: 'm' }, /^REDIS_SENTINELS: "nope" is not host:port/],
    [{ REDIS_CLUSTER_NODES: 'r:70000' }, /^REDIS_CLUSTER_NODES: "r:70000" is not host:port; .*port 1-65535/],
    [{ REDIS_CLUSTER_NODES: ' , ' }, /^REDIS_CLUSTER_NODES: expected a comma-separated list of host:port/],
    [{ REDIS_URL: 'redis://r:6379', REDIS_SENTINEL_MASTER: 'm' }, /^REDIS_SENTINEL_MASTER: only used with REDIS_SENTINELS/],
    [{ REDIS_PASSWORD: 'pw' }, /^REDIS_PASSWORD: set without REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES/],
    [{ REDIS_URL: 'redis://:inline@r:6379', REDIS_PASSWORD: 'pw' }, /^REDIS_PASSWORD: REDIS_URL already carries a password/],
    [{ REDIS_URL: 'rediss://r:6379', REDIS_TLS: 'false' }, /^REDIS_TLS: false contradicts the rediss:\/\/ REDIS_URL/],
    [{ REDIS_URL: 'redis://r:6379', REDIS_TLS: 'yes' }, /^REDIS_TLS: expected true or false/],
    [{ REDIS_URL: 'redis://r:6379', REDIS_CACERT: '/nonexistent/ca.pem', REDIS_TLS: 'true' }, /^REDIS_CACERT: cannot read "\/nonexistent\/ca.pem" \(ENOENT\)/],
    [{ REDIS_URL: 'redis://r:6379', REDIS_CACERT: tempFile('x.pem', 'not a certificate'), REDIS_TLS: 'true' }, /^REDIS_CACERT: ".*" holds no PEM certificate/],
    [{ REDIS_CLUSTER_NODES: 'r:7000', REDIS_CACERT: caFile }, /^REDIS_CACERT: only used with TLS/]
  ])('rejects %o with one clear line', (env, expected) => {
    const problems = problemsOf(() => loadConfig({ ...base, ...env }))
    expect(problems).toHaveLength(1)
    expect(problems[0]).toMatch(expected)
  })

  it('takes Sentinel or Cluster as the production store, and wants the shared encryption key with either', () => {
    const production = { ...base, NODE_ENV: 'production', VAULT_ADDR: 'https://vault:8200', VAULT_TOKEN: 'x' }
    expect(loadConfig({ ...production, REDIS_SENTINELS: 's:26379', REDIS_SENTINEL_MASTER: 'm' }).redis?.topology).toBe('sentinel')
    expect(loadConfig({ ...production, REDIS_CLUSTER_NODES: 'r:7000' }).redis?.topology).toBe('cluster')
    expect(problemsOf(() => loadConfig({ ...production, REDIS_CLUSTER_NODES: 'r:7000', TOKEN_ENCRYPTION_KEY: undefined })))
      .toEqual([expect.stringMatching(/^TOKEN_ENCRYPTION_KEY: required with Redis/)])
    expect(problemsOf(() => loadConfig({ ...base, REDIS_SENTINELS: 's:26379', REDIS_SENTINEL_MASTER: 'm', TOKEN_ENCRYPTION_KEY: undefined })))
      .toEqual([expect.stringMatching(/^TOKEN_ENCRYPTION_KEY: required with Redis/)])
  })
})

describe('credentials file', () => {
  it('parses YAML and JSON', () => {
    expect(parseCredentialsFile(validFile, 'c.yaml').credentials).toHaveLength(1)
    expect(parseCredentialsFile(JSON.stringify({ credentials: [] }), 'c.json').credentials).toEqual([])
  })

  it('reports syntax errors with the file name', () => {
    expect(fileProblems('credentials: [', 'c.yaml')).toEqual([expect.stringMatching(/^c\.yaml: not valid YAML/)])
    expect(fileProblems('{"credentials": ', 'c.json')).toEqual([expect.stringMatching(/^c\.json: not valid JSON/)])
  })

  it('reports each schema problem with its path in the file', () => {
    const problems = fileProblems(`
callers:
  - id: Billing Team
credentials:
  - id: kivra
    provider: kivr
    environment: prod
    secret: noslash
    refresh: { ratio: 1.5 }
    surprise: true
`)
    expect(problems).toEqual(expect.arrayContaining([
      expect.stringMatching(/^credentials\.yaml: callers\[0\]\.id: expected 1-64 characters/),
      expect.stringMatching(/^credentials\.yaml: callers\[0\]: expected api_key_sha256 or jwt_subject/),
      expect.stringMatching(/^credentials\.yaml: credentials\[0\]\.provider: .*"kivra"/),
      expect.stringMatching(/^credentials\.yaml: credentials\[0\]\.environment: .*"sandbox"/),
      expect.stringMatching(/^credentials\.yaml: credentials\[0\]\.secret: expected "<mount>\/<path>"/),
      expect.stringMatching(/^credentials\.yaml: credentials\[0\]\.refresh\.ratio: expected a ratio below 1/),
      expect.stringMatching(/^credentials\.yaml: credentials\[0\]: .*surprise/)
    ]))
  })

  it('checks cross-references: unknown callers, duplicates, oauth2 token_url, JWT callers', () => {
    const problems = fileProblems(`
callers:
  - { id: a, api_key_sha256: "${'b'.repeat(64)}" }
  - { id: a, jwt_subject: "system:serviceaccount:x:y" }
credentials:
  - { id: one, provider: oauth2, environment: sandbox, secret: s/p, allowed_callers: [a, ghost] }
  - { id: one, provider: kivra, environment: sandbox, secret: s/p, token_url: "https://x/token", backend_only: false }
`)
    expect(problems).toEqual([
      'credentials.yaml: credentials[0].token_url: required when provider is oauth2',
      'credentials.yaml: credentials[1].token_url: only allowed when provider is oauth2 (use base_url to override a provider host)',
      'credentials.yaml: credentials[1].backend_only: partner credentials are always backend-only',
      'credentials.yaml: callers[1].id: duplicate caller id "a"',
      'credentials.yaml: callers[1].jwt_subject: needs a caller_jwt section (issuer, audience, keys)',
      'credentials.yaml: credentials[0].allowed_callers[1]: unknown caller "ghost"',
      'credentials.yaml: credentials[1].id: duplicate credential id "one"'
    ])
  })

  it('requires exactly one JWT key source', () => {
    expect(fileProblems('caller_jwt: { issuer: i, audience: a }'))
      .toEqual(['credentials.yaml: caller_jwt: expected exactly one of jwks_url or jwks_file'])
  })

  it('the checked-in example file is valid', () => {
    expect(loadConfig({ CREDENTIALS_FILE: embeddedCredentialsFile }).credentials.map(c => c.provider))
      .toEqual(['kivra', 'kigo', 'klavi', 'sir-giving'])
  })
})
