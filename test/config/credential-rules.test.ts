import { describe, expect, it } from 'vitest'
import { loadConfig, parseCredentialsFile } from '../../src/config.js'
import { ConfigError } from '../../src/errors.js'
import { tempFile } from '../support/app.js'

function fileProblems (yaml: string): string[] {
  try {
    parseCredentialsFile(yaml, 'credentials.yaml')
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems]
    throw err
  }
  return []
}

const hash = (digit: string): string => digit.repeat(64)
const jwt = 'caller_jwt: { issuer: https://issuer.example, audience: broker, jwks_url: "https://keys.example/jwks" }'

/** One oauth2 credential with `fields` (a YAML flow mapping's members). */
const credentialWith = (fields: string): string => `
credentials:
  - { id: api, provider: oauth2, environment: production, secret: s/p, token_url: "https://auth.example/token", ${fields} }
`

describe('callers: one identity, one caller', () => {
  it('refuses two callers with the same API key hash, in any letter case, naming both entries', () => {
    const problems = fileProblems(`
callers:
  - { id: service, api_key_sha256: "${hash('a')}" }
  - { id: other, api_key_sha256: "${hash('b')}" }
  - { id: ops, api_key_sha256: "${hash('A')}", admin: true }
`)
    expect(problems).toEqual([
      'credentials.yaml: callers[2].api_key_sha256: callers[0] ("service") and callers[2] ("ops") have the same API key (api_key_sha256); each caller needs its own'
    ])
  })

  it('refuses two callers with the same jwt_subject, naming both entries', () => {
    const problems = fileProblems(`
${jwt}
callers:
  - { id: mailer, jwt_subject: "system:serviceaccount:mail:mailer" }
  - { id: mailer-admin, jwt_subject: "system:serviceaccount:mail:mailer", admin: true }
`)
    expect(problems).toEqual([
      'credentials.yaml: callers[1].jwt_subject: callers[0] ("mailer") and callers[1] ("mailer-admin") have the same jwt_subject; each caller needs its own'
    ])
  })

  it('holds an upper-case hash in lower case, as the key digest is computed', () => {
    const file = parseCredentialsFile(`callers: [{ id: a, api_key_sha256: "${'AB'.repeat(32)}" }]`, 'c.yaml')
    expect(file.callers[0]?.api_key_sha256).toBe('ab'.repeat(32))
  })
})

describe('provider and JWKS URLs', () => {
  it.each([
    ['token_url: "http://auth.example/token"', 'token_url'],
    ['base_url: "http://10.0.0.8:8080"', 'base_url'],
    ['base_url: "http://127.0.0.1.nip.io"', 'base_url']
  ])('refuses plain http to a non-loopback host (%s)', (fields, field) => {
    const yaml = credentialWith(fields).replace('token_url: "https://auth.example/token", token_url', 'token_url')
    expect(fileProblems(yaml)).toEqual([
      `credentials.yaml: credentials[0].${field}: expected https (plain http only to a loopback host, or allow_insecure_http: true on a lab credential)`
    ])
  })

  it.each(['https://exa mple.com/', 'not a url', 'https://', 'https://[::1/', 'https://%zz/', 'https://x:99999/'])('reports %j as a config problem, never a crash', url => {
    for (const field of ['base_url', 'api_base_url']) {
      expect(fileProblems(credentialWith(`${field}: "${url}"`))).toEqual([`credentials.yaml: credentials[0].${field}: expected an http(s) URL`])
    }
  })

  it.each(['http://127.0.0.1:4010', 'http://127.9.9.9', 'http://localhost:4010', 'http://[::1]:4010', 'https://auth.example'])('takes %s as a base_url', url => {
    expect(fileProblems(credentialWith(`base_url: "${url}"`))).toEqual([])
  })

  it('allow_insecure_http: true lifts the https rule for that credential only', () => {
    const yaml = `
credentials:
  - { id: lab, provider: oauth2, environment: sandbox, secret: s/p, token_url: "http://auth.lab:8080/token", allow_insecure_http: true }
  - { id: prod, provider: oauth2, environment: sandbox, secret: s/p, token_url: "http://auth.lab:8080/token" }
`
    expect(fileProblems(yaml)).toEqual([expect.stringMatching(/^credentials\.yaml: credentials\[1\]\.token_url: expected https/)])
    expect(parseCredentialsFile(yaml.split('\n').slice(0, 3).join('\n'), 'c.yaml').credentials[0]?.allow_insecure_http).toBe(true)
  })

  it.each([
    ['https://169.254.169.254/latest', 'link-local'],
    ['https://2852039166/', 'link-local'],
    ['https://[fe80::1]/', 'link-local'],
    ['https://[::ffff:169.254.169.254]/', 'link-local'],
    ['https://224.0.0.1/', 'multicast'],
    ['https://[ff02::1]/', 'multicast'],
    ['https://0.0.0.0:443/', 'unspecified'],
    ['https://[::]/', 'unspecified']
  ])('refuses %s (%s), even with allow_insecure_http', (url, kind) => {
    const problems = fileProblems(credentialWith(`base_url: "${url}", allow_insecure_http: true`))
    expect(problems).toHaveLength(1)
    expect(problems[0]).toMatch(new RegExp(`^credentials\\.yaml: credentials\\[0\\]\\.base_url: expected a provider's address, not a ${kind} one`))
  })

  it('refuses user:password@ in a URL, without repeating it', () => {
    const problems = fileProblems(credentialWith('base_url: "https://client:hunter2@auth.example/"'))
    expect(problems).toEqual(['credentials.yaml: credentials[0].base_url: expected no user:password@ in the URL (secrets belong in Vault or the secrets file)'])
  })

  it('refuses a plain-http jwks_url to a non-loopback host, and allow_insecure_http never lifts it', () => {
    expect(fileProblems(jwt.replace('https://keys', 'http://keys'))).toEqual([
      'credentials.yaml: caller_jwt.jwks_url: expected https (plain http only to a loopback host)'
    ])
    expect(fileProblems('caller_jwt: { issuer: i, audience: a, jwks_url: "http://127.0.0.1:9000/jwks" }')).toEqual([])
    expect(fileProblems('caller_jwt: { issuer: i, audience: a, jwks_url: "https://169.254.169.254/jwks" }')).toEqual([
      expect.stringMatching(/^credentials\.yaml: caller_jwt\.jwks_url: expected a provider's address, not a link-local one/)
    ])
    expect(fileProblems(`caller_jwt: { issuer: i, audience: a, jwks_url: "http://keys.example/jwks", allow_insecure_http: true }`)).toEqual([
      expect.stringMatching(/^credentials\.yaml: caller_jwt: .*allow_insecure_http/),
      'credentials.yaml: caller_jwt.jwks_url: expected https (plain http only to a loopback host)'
    ])
  })

  it('applies in every mode: the same file is refused outside production too', () => {
    const file = tempFile('c.yaml', credentialWith('token_url: "http://auth.example/token"').replace('token_url: "https://auth.example/token", ', ''))
    expect(() => loadConfig({ CREDENTIALS_FILE: file })).toThrow(ConfigError)
  })
})
