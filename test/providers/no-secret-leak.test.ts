/**
 * Every error path of every adapter, driven with recognisable canary secrets: no error message, no
 * serialized error (what the logger writes) and no log line may contain a secret or a token — including
 * when a provider echoes what we sent back in its error body.
 */
import { randomBytes } from 'node:crypto'
import { beforeAll, describe, expect, it } from 'vitest'
import type { ProviderKind } from '../../src/providers/catalog.js'
import { serializeError } from '../../src/observability/logger.js'
import { createProviderRegistry } from '../../src/providers/catalog.js'
import type { Grant, SecretData, TokenAdapter } from '../../src/providers/types.js'
import { useCleanup } from '../support/fixtures.js'
import { testContext, testCredential } from '../support/providers/context.js'
import { startProviderStandIns, type Fault, type ProviderStandIn, type ProviderStandIns } from '../support/providers/index.js'
import { startScriptedServer } from '../support/scripted-server.js'

const canary = (name: string): string => `SECRET-CANARY-${name}-${randomBytes(6).toString('hex')}`

const canarySecrets = {
  kivra: { client_id: canary('kivra-id'), client_secret: canary('kivra-secret') },
  kigo: { api_key: canary('kigo-key'), partner_id: canary('kigo-partner') },
  klavi: { accessKey: canary('klavi-access'), secretKey: canary('klavi-secret') },
  oauth2: { client_id: canary('oauth2-id'), client_secret: canary('oauth2-secret') }
} satisfies Partial<Record<ProviderKind, SecretData>>

type TokenProvider = keyof typeof canarySecrets

/** The secret values, plus the Basic pair as sent on the wire. */
function forbiddenStrings (secret: SecretData): string[] {
  const values = Object.values(secret)
  return [...values, Buffer.from(values.join(':')).toString('base64')]
}

describe('no secret or token in errors and logs', () => {
  const registry = createProviderRegistry()
  let standIns: ProviderStandIns
  let echoUrl: string
  const cleanup = useCleanup({ after: 'all' })

  beforeAll(async () => {
    standIns = cleanup.add(await startProviderStandIns())
    standIns.kivra.secret = canarySecrets.kivra
    standIns.kigo.secret = canarySecrets.kigo
    standIns.klavi.secret = canarySecrets.klavi
    standIns.oauth2.secret = canarySecrets.oauth2
    // A provider that quotes the whole request (headers and body) back in every error field it has.
    const echo = cleanup.add(await startScriptedServer((request, res) => {
      const said = `you sent ${request.headers.authorization ?? ''} ${decodeURIComponent(request.body)}`
      const status = request.path.includes('/refresh') ? 503 : 401
      res.writeHead(status, { 'content-type': 'application/json', 'x-error-code': said, 'retry-after': '1' })
      res.end(JSON.stringify({ code: said, short_message: said, long_message: said, message: said, statusCode: said, error: 'invalid_client', error_description: said }))
    }))
    echoUrl = echo.url
  })

  function standInFor (provider: TokenProvider): ProviderStandIn {
    return standIns[provider]
  }

  function credentialFor (provider: TokenProvider, baseUrl: string, overrides: Record<string, unknown> = {}): ReturnType<typeof testCredential> {
    return provider === 'oauth2'
      ? testCredential('oauth2', { token_url: `${baseUrl}/oauth/token`, timeout_ms: 200, ...overrides })
      : testCredential(provider, { base_url: baseUrl, timeout_ms: 200, ...overrides })
  }

  function expectClean (err: unknown, logText: string, forbidden: readonly string[]): void {
    expect(err).toBeInstanceOf(Error)
    const message = (err as Error).message
    const serialized = JSON.stringify(serializeError(err))
    for (const value of forbidden) {
      expect(message).not.toContain(value)
      expect(serialized).not.toContain(value)
      expect(logText).not.toContain(value)
    }
    expect(serialized).not.toContain('SECRET-CANARY')
    expect(logText).not.toContain('SECRET-CANARY')
  }

  async function failingCall (call: () => Promise<unknown>): Promise<unknown> {
    try {
      await call()
    } catch (err) {
      return err
    }
    throw new Error('expected the call to fail')
  }

  const faults: Array<[string, Fault]> = [
    ['wrong credentials', { kind: 'wrong-credentials' }],
    ['5xx', { kind: 'server-error', status: 500 }],
    ['429', { kind: 'rate-limit', retryAfter: '2' }],
    ['dropped connection', { kind: 'drop' }],
    ['timeout', { kind: 'latency', ms: 1000 }],
    ['malformed JSON', { kind: 'malformed-json' }],
    ['missing token', { kind: 'missing-token' }],
    ['malformed lifetime', { kind: 'malformed-lifetime', value: 'soon' }]
  ]

  for (const provider of ['kivra', 'kigo', 'klavi', 'oauth2'] as const) {
    describe(provider, () => {
      const adapter = (): TokenAdapter => registry.adapterFor(provider) as TokenAdapter

      for (const [name, fault] of faults) {
        it(`${name}: clean error and logs`, async () => {
          const standIn = standInFor(provider)
          standIn.setFault(fault, { times: 1 })
          const ctx = testContext(credentialFor(provider, standIn.url))
          const result = await adapter().mint(canarySecrets[provider], ctx).then(grant => grant, (err: unknown) => err)
          standIn.clearFaults()
          // Every fault is an error (an unusable lifetime too: never a guessed one, docs/providers.md).
          expect(result).toBeInstanceOf(Error)
          expectClean(result instanceof Error ? result : new Error('none'), ctx.captured.text(), [...forbiddenStrings(canarySecrets[provider]), ...standIn.issuedTokens])
        })
      }

      it('a provider echoing the request in its error body: clean error and logs', async () => {
        // oauth2 with client_secret_post, so the secret travels (and is echoed) in the clear.
        const ctx = testContext(credentialFor(provider, echoUrl, { scope: 'read', ...(provider === 'oauth2' ? { client_auth: 'post' } : {}) }))
        const err = await failingCall(async () => await adapter().mint(canarySecrets[provider], ctx))
        expectClean(err, ctx.captured.text(), forbiddenStrings(canarySecrets[provider]))
      })

      it('a refused connection: clean error and logs', async () => {
        const ctx = testContext(credentialFor(provider, 'http://127.0.0.1:9'))
        const err = await failingCall(async () => await adapter().mint(canarySecrets[provider], ctx))
        expectClean(err, ctx.captured.text(), forbiddenStrings(canarySecrets[provider]))
      })

      it('a missing secret field: clean error', async () => {
        const [first] = Object.entries(canarySecrets[provider])
        const partial = { [first?.[0] ?? 'x']: first?.[1] ?? 'x' }
        const ctx = testContext(credentialFor(provider, standInFor(provider).url))
        const err = await failingCall(async () => await adapter().mint(partial, ctx))
        expectClean(err, ctx.captured.text(), forbiddenStrings(canarySecrets[provider]))
      })
    })
  }

  describe('klavi refresh', () => {
    const tokenCanary = canary('klavi-token')
    const grant: Grant = { accessToken: tokenCanary, tokenType: 'Bearer', obtainedAt: Date.now(), expiresAt: Date.now() + 600_000 }
    const refresh = (): NonNullable<TokenAdapter['refresh']> => {
      const adapter = registry.adapterFor('klavi') as TokenAdapter
      if (adapter.refresh === undefined) throw new Error('klavi has refresh')
      return adapter.refresh
    }

    it('a 5xx on refresh (provider echoing the Bearer token): clean error and logs', async () => {
      const ctx = testContext(credentialFor('klavi', echoUrl))
      const err = await failingCall(async () => await refresh()(grant, canarySecrets.klavi, ctx))
      expectClean(err, ctx.captured.text(), [tokenCanary, ...forbiddenStrings(canarySecrets.klavi)])
    })

    it('a 401 on refresh falling back to a failing mint: clean error and logs', async () => {
      const ctx = testContext(credentialFor('klavi', standIns.klavi.url))
      const err = await failingCall(async () => await refresh()(grant, { ...canarySecrets.klavi, secretKey: canary('klavi-old') }, ctx))
      expectClean(err, ctx.captured.text(), [tokenCanary, ...forbiddenStrings(canarySecrets.klavi)])
    })
  })

  describe('sir-giving signer', () => {
    it('a malformed request or a missing field: clean errors', () => {
      const adapter = registry.adapterFor('sir-giving')
      if (adapter.kind !== 'signing') throw new Error('sir-giving signs')
      const secret = { secretKey: canary('sk'), hmacSecret: canary('hmac') }
      const ctx = testContext(testCredential('sir-giving'))
      for (const [request, usedSecret] of [
        [{ method: 'GET', path: secret.secretKey, bodySha256: secret.hmacSecret }, secret],
        [{ method: 'GET', path: '/v1/partner/x', bodySha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' }, { hmacSecret: secret.hmacSecret }]
      ] as const) {
        let err: unknown
        try { adapter.sign(request, usedSecret, ctx) } catch (caught) { err = caught }
        expectClean(err, ctx.captured.text(), Object.values(secret))
      }
    })
  })
})
