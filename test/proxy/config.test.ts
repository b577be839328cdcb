/** The proxy's part of the credentials file (src/config/proxy.ts) and where proxied requests go (catalog.ts). */
import { describe, expect, it } from 'vitest'
import { stringify } from 'yaml'
import { parseCredentialsFile, type CredentialConfig } from '../../src/config.js'
import { ConfigError } from '../../src/errors.js'
import { apiBaseUrlFor } from '../../src/providers/catalog.js'

function file (credential: Record<string, unknown>): string {
  return stringify({ credentials: [{ id: 'c', environment: 'sandbox', secret: 'secret/c', provider: 'kivra', ...credential }] })
}

function parsed (credential: Record<string, unknown>): CredentialConfig {
  return parseCredentialsFile(file(credential), 'credentials.yaml').credentials[0] as CredentialConfig
}

function problems (credential: Record<string, unknown>): string[] {
  try {
    parseCredentialsFile(file(credential), 'credentials.yaml')
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems]
    throw err
  }
  throw new Error('expected a ConfigError')
}

describe('credentials file: proxy settings', () => {
  it('defaults: any method and path, min_ttl 30 s, 1 MiB bodies, the credential\'s timeout', () => {
    expect(parsed({}).proxy).toEqual({ min_ttl: 30, body_limit: 1_048_576 })
    expect(parsed({}).expose_partner_key).toBeUndefined()
  })

  it('takes the documented fields', () => {
    const proxy = { allowed_paths: ['/v1/', '/api/v1/offers'], methods: ['GET', 'POST'], min_ttl: 120, body_limit: 4096, timeout_ms: 2500 }
    expect(parsed({ api_base_url: 'https://api.example/base', proxy }).proxy).toEqual(proxy)
    expect(parsed({ provider: 'sir-giving', expose_partner_key: false }).expose_partner_key).toBe(false)
  })

  it.each([
    ['plain http to another host', { api_base_url: 'http://api.example' }, 'credentials.yaml: credentials[0].api_base_url: expected https (plain http only to a loopback host, or allow_insecure_http: true on a lab credential)'],
    ['a query in the API base', { api_base_url: 'https://api.example/v1?x=1' }, 'credentials.yaml: credentials[0].api_base_url: expected no query or fragment (the path is the prefix every proxied path goes under)'],
    ['user info in the API base', { api_base_url: 'https://user:pass@api.example/v1' }, 'credentials.yaml: credentials[0].api_base_url: expected no user:password@ in the URL'],
    ['the metadata address as API base', { api_base_url: 'https://169.254.169.254/latest' }, 'credentials.yaml: credentials[0].api_base_url: expected a provider\'s address, not a link-local one'],
    ['a method the route does not serve', { proxy: { methods: ['TRACE'] } }, 'credentials.yaml: credentials[0].proxy.methods[0]:'],
    ['a path prefix without a leading slash', { proxy: { allowed_paths: ['v1/'] } }, 'credentials.yaml: credentials[0].proxy.allowed_paths[0]: expected a path prefix starting with "/" (e.g. "/v1/")'],
    ['a path prefix with a dot-dot segment', { proxy: { allowed_paths: ['/v1/../admin/'] } }, 'credentials.yaml: credentials[0].proxy.allowed_paths[0]: expected no empty, "." or ".." segments'],
    ['a body limit over 16 MiB', { proxy: { body_limit: 16 * 1_048_576 + 1 } }, 'credentials.yaml: credentials[0].proxy.body_limit:'],
    ['an unknown proxy field', { proxy: { retries: 3 } }, 'credentials.yaml: credentials[0].proxy:'],
    ['expose_partner_key on a token credential', { expose_partner_key: false }, 'credentials.yaml: credentials[0].expose_partner_key: only sir-giving credentials have a partner key']
  ])('refuses %s', (_name, credential, expected) => {
    const found = problems(credential)
    expect(found).toHaveLength(1)
    expect(found[0]).toContain(expected)
  })

  it.each([['http://127.0.0.1:4010/api'], ['http://localhost:8080'], ['http://[::1]:9000/x']])('allows plain http to loopback (%s)', (url) => {
    expect(parsed({ api_base_url: url }).api_base_url).toBe(url)
  })
})

describe('apiBaseUrlFor', () => {
  it('is the provider\'s documented host for the environment, without api_base_url or base_url', () => {
    expect(apiBaseUrlFor(parsed({}))).toBe('https://sender.sandbox-api.kivra.com')
    expect(apiBaseUrlFor(parsed({ environment: 'production' }))).toBe('https://sender.api.kivra.com')
    expect(apiBaseUrlFor(parsed({ provider: 'klavi', environment: 'production' }))).toBe('https://api.klavi.ai')
    expect(apiBaseUrlFor(parsed({ provider: 'sir-giving' }))).toBe('https://devapi.sirgiving.org')
    expect(apiBaseUrlFor(parsed({ provider: 'kigo', environment: 'production' }))).toBe('https://api.kigodigital.net')
  })

  it('follows base_url, and api_base_url wins over both (trailing slashes dropped)', () => {
    expect(apiBaseUrlFor(parsed({ base_url: 'https://kivra.proxy.internal/' }))).toBe('https://kivra.proxy.internal')
    expect(apiBaseUrlFor(parsed({ base_url: 'https://kivra.proxy.internal', api_base_url: 'https://api.example/base/' }))).toBe('https://api.example/base')
  })

  it('is undefined for oauth2 without api_base_url (the proxy answers 409)', () => {
    expect(apiBaseUrlFor(parsed({ provider: 'oauth2', token_url: 'https://auth.example/token' }))).toBeUndefined()
    expect(apiBaseUrlFor(parsed({ provider: 'oauth2', token_url: 'https://auth.example/token', api_base_url: 'https://api.example' }))).toBe('https://api.example')
  })
})
