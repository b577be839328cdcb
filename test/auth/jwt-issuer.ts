/**
 * A caller-token issuer for tests, shaped like a Kubernetes API server's service account issuer: signing
 * keys made with jose, a JWKS served over real HTTP on 127.0.0.1 (what `caller_jwt.jwks_url` points at),
 * and tokens signed the way projected service account tokens are (iss, aud, sub, iat, nbf, exp, kid).
 */
import { randomUUID } from 'node:crypto'
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose'
import { startScriptedServer } from '../support/scripted-server.js'

export const issuer = 'https://kubernetes.default.svc.cluster.local'
export const audience = 'credential-broker'

export interface SigningKey {
  kid: string
  alg: string
  privateKey: CryptoKey
  jwk: JWK
}

/** A fresh key pair with its public JWK (kid, alg, use) as a JWKS would list it. */
export async function signingKey (alg: 'RS256' | 'ES256' | 'ES384' | 'PS256', kid = `${alg.toLowerCase()}-${randomUUID().slice(0, 8)}`): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true })
  return { kid, alg, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } }
}

export interface TokenOptions {
  sub?: string
  iss?: string | null
  aud?: string | string[]
  /** Seconds from now; default 3600. */
  expiresIn?: number | null
  /** Seconds from now (negative: in the past); default none. */
  notBefore?: number
  kid?: string | null
  alg?: string
  extra?: Record<string, unknown>
}

/** Signs a caller token with `key` (claims default to a valid token for the test audience). */
export async function callerToken (key: { privateKey: CryptoKey | Uint8Array, kid?: string, alg: string }, options: TokenOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  const payload: Record<string, unknown> = { iat: now - 5, jti: randomUUID(), ...options.extra }
  if (options.iss !== null) payload.iss = options.iss ?? issuer
  payload.aud = options.aud ?? audience
  if (options.sub !== undefined) payload.sub = options.sub
  if (options.expiresIn !== null) payload.exp = now + (options.expiresIn ?? 3600)
  if (options.notBefore !== undefined) payload.nbf = now + options.notBefore
  const header: Record<string, string> = { alg: options.alg ?? key.alg, typ: 'JWT' }
  const kid = options.kid === undefined ? key.kid : options.kid
  if (kid !== null && kid !== undefined) header.kid = kid
  return await new SignJWT(payload).setProtectedHeader(header as { alg: string }).sign(key.privateKey)
}

export interface JwksServer {
  url: string
  /** Replaces the keys served from now on (rotation). */
  serve: (keys: JWK[]) => void
  /** 'ok' serves the JWKS; 'error' answers 500; 'garbage' answers 200 with a body that is not JSON. */
  mode: 'ok' | 'error' | 'garbage'
  /** How many times the JWKS was requested. */
  readonly fetches: number
  close: () => Promise<void>
}

/** Serves a JWKS on 127.0.0.1 at /openid/v1/jwks (the Kubernetes path). */
export async function startJwksServer (keys: JWK[]): Promise<JwksServer> {
  let served = keys
  let fetches = 0
  const state: { mode: JwksServer['mode'] } = { mode: 'ok' }
  const server = await startScriptedServer((request, res) => {
    if (request.path !== '/openid/v1/jwks') { res.writeHead(404).end(); return }
    fetches += 1
    if (state.mode === 'error') { res.writeHead(500, { 'content-type': 'text/plain' }).end('internal error'); return }
    if (state.mode === 'garbage') { res.writeHead(200, { 'content-type': 'application/json' }).end('<html>'); return }
    res.writeHead(200, { 'content-type': 'application/jwk-set+json' }).end(JSON.stringify({ keys: served }))
  })
  return {
    url: `${server.url}/openid/v1/jwks`,
    serve: (next) => { served = next },
    get mode () { return state.mode },
    set mode (value) { state.mode = value },
    get fetches () { return fetches },
    close: server.close
  }
}
