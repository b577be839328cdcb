import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto'
import type { Logger } from 'pino'
import { z } from 'zod'
import type { Grant } from '../providers/types.js'
import { parseStored } from './parse-stored.js'
import { isSecretPath } from '../secrets/secret-path.js'
import { StoreError } from '../errors.js'

/** One key of TOKEN_ENCRYPTION_KEY: an id written into every envelope it seals, and 32 bytes of AES key. */
export interface EncryptionKey {
  readonly kid: string
  readonly key: Buffer
}

/** What a sealed grant must decrypt to; unknown fields are dropped. */
export const GrantSchema = z.object({
  accessToken: z.string().min(1),
  tokenType: z.string(),
  expiresAt: z.number(),
  obtainedAt: z.number(),
  scope: z.string().optional(),
  refreshToken: z.string().optional(),
  secretVersion: z.number().int().optional(),
  secretRolledBackFrom: z.number().int().optional(),
  refreshAt: z.number().optional()
})

/** A sealed grant as stored: every binary field base64. */
export const GrantEnvelopeSchema = z.object({
  v: z.literal(1),
  kid: z.string().min(1),
  iv: z.string(),
  tag: z.string(),
  ct: z.string()
})
export type GrantEnvelope = z.infer<typeof GrantEnvelopeSchema>

/** AES-256-GCM sealing of grants at rest. */
export interface GrantCipher {
  /** Id of the key that seals new grants. */
  readonly kid: string
  /** Ids of every key that can open an envelope, the sealing key first. */
  readonly kids: readonly string[]
  /** True when the key was generated for this process (embedded mode): nothing sealed survives a restart. */
  readonly ephemeral: boolean
  /**
   * Seals a grant. `aad` is the storage key the envelope is written under: it is authenticated, so an
   * envelope copied under another key does not open.
   */
  seal: (grant: Grant, aad: string) => GrantEnvelope
  /**
   * Opens an envelope sealed under `aad`. Anything that does not open (unknown key id after a rotation,
   * another key's envelope, tampering, a malformed value) yields null and a warning: for the broker that
   * is "no grant", which it heals by minting a new one.
   */
  open: (envelope: unknown, aad: string) => Grant | null
}

const KEY_BYTES = 32
const IV_BYTES = 12
const TAG_BYTES = 16
const base64Pattern = /^[A-Za-z0-9+/_-]+={0,2}$/

/** The default key id: the first 8 hex characters of sha256(key). Names the key without revealing it. */
export function keyId (key: Buffer): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 8)
}

/** TOKEN_ENCRYPTION_KEY, parsed: a reference to a field of a Vault secret, or the keys themselves. */
export type EncryptionKeySetting =
  | { readonly kind: 'vault', readonly path: string, readonly field: string }
  | { readonly kind: 'keys', readonly keys: readonly EncryptionKey[] }

/**
 * The one grammar of TOKEN_ENCRYPTION_KEY: "vault:<secret path>#<field>" (secret-path.ts), or a comma-separated list of
 * "<base64 32 bytes>" or "<kid>:<base64 32 bytes>"; the first key seals, all open (rotation: add the new
 * key first, keep the old one until its grants expired). Throws a StoreError ('invalid') whose message
 * names the position of a bad entry, never its value. Config validation and the store both use it.
 */
export function parseEncryptionKeySetting (spec: string): EncryptionKeySetting {
  const trimmed = spec.trim()
  if (trimmed.startsWith('vault:')) {
    const match = /^vault:([^#]+)#(\S+)$/.exec(trimmed)
    if (match === null || !isSecretPath(match[1] as string)) throw new StoreError('invalid', 'TOKEN_ENCRYPTION_KEY: expected "vault:<mount>/<path>#<field>" (or "vault:<mount>:<path>#<field>" for a mount with a slash)')
    return { kind: 'vault', path: match[1] as string, field: match[2] as string }
  }
  const keys: EncryptionKey[] = []
  spec.split(',').forEach((entry, index) => {
    const separator = entry.indexOf(':')
    const explicitKid = separator === -1 ? undefined : entry.slice(0, separator).trim()
    const material = (separator === -1 ? entry : entry.slice(separator + 1)).trim()
    if (explicitKid === '') throw new StoreError('invalid', `TOKEN_ENCRYPTION_KEY: key ${index + 1} has an empty key id`)
    const key = base64Pattern.test(material) ? Buffer.from(material, 'base64') : Buffer.alloc(0)
    if (key.length !== KEY_BYTES) throw new StoreError('invalid', `TOKEN_ENCRYPTION_KEY: key ${index + 1} is not 32 bytes of base64 (got ${key.length} bytes); expected the output of "openssl rand -base64 32"`)
    const kid = explicitKid ?? keyId(key)
    const sameKid = keys.find(existing => existing.kid === kid)
    if (sameKid !== undefined) {
      // The same key listed twice is harmless; two keys under one id would make opening ambiguous.
      if (sameKid.key.equals(key)) return
      throw new StoreError('invalid', `TOKEN_ENCRYPTION_KEY: key ${index + 1} reuses the id of another key`)
    }
    keys.push({ kid, key })
  })
  if (keys.length === 0) throw new StoreError('invalid', 'TOKEN_ENCRYPTION_KEY: no key')
  return { kind: 'keys', keys }
}

/** The keys of a TOKEN_ENCRYPTION_KEY that is a key list (a "vault:" reference must have been resolved first). */
export function parseEncryptionKeySpec (spec: string): EncryptionKey[] {
  const setting = parseEncryptionKeySetting(spec)
  if (setting.kind === 'vault') throw new StoreError('invalid', 'TOKEN_ENCRYPTION_KEY: a "vault:" reference must be resolved to keys before use')
  return [...setting.keys]
}

/**
 * Creates the cipher for grants at rest from TOKEN_ENCRYPTION_KEY (already resolved from Vault if it was a
 * reference). Without a key spec it generates a random per-process key: only for the embedded in-memory
 * store, since replicas could not read each other's grants (the config layer refuses it with Redis).
 */
export function createGrantCipher (keySpec: string | undefined, deps: { log: Logger }): GrantCipher {
  const { log } = deps
  const ephemeral = keySpec === undefined
  const keys = keySpec === undefined ? [generatedKey()] : parseEncryptionKeySpec(keySpec)
  const byKid = new Map(keys.map(entry => [entry.kid, entry.key]))
  // parseEncryptionKeySpec never returns an empty list.
  const sealing = keys[0] as EncryptionKey
  if (ephemeral) log.warn({ kid: sealing.kid }, 'no TOKEN_ENCRYPTION_KEY: grants are sealed with a per-process random key (embedded mode only)')

  return {
    kid: sealing.kid,
    kids: keys.map(entry => entry.kid),
    ephemeral,

    seal (grant, aad) {
      // A fresh random 96-bit IV per envelope: GCM must never reuse an IV under one key, and grants are
      // few enough (one per refresh) that random IVs stay far below the collision bound.
      const iv = randomBytes(IV_BYTES)
      const cipher = createCipheriv('aes-256-gcm', sealing.key, iv, { authTagLength: TAG_BYTES })
      cipher.setAAD(Buffer.from(aad, 'utf8'))
      const ct = Buffer.concat([cipher.update(JSON.stringify(grant), 'utf8'), cipher.final()])
      return {
        v: 1,
        kid: sealing.kid,
        iv: iv.toString('base64'),
        tag: cipher.getAuthTag().toString('base64'),
        ct: ct.toString('base64')
      }
    },

    open (value, aad) {
      const parsed = GrantEnvelopeSchema.safeParse(value)
      if (!parsed.success) {
        log.warn({ key: aad }, 'stored grant is not a readable envelope; treating it as absent')
        return null
      }
      const envelope = parsed.data
      const key = byKid.get(envelope.kid)
      if (key === undefined) {
        log.warn({ key: aad, kid: envelope.kid }, 'stored grant is sealed with a key this replica does not hold (rotated away?); treating it as absent')
        return null
      }
      let plaintext: string
      try {
        const iv = Buffer.from(envelope.iv, 'base64')
        const tag = Buffer.from(envelope.tag, 'base64')
        if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) throw new Error('bad iv or tag length')
        // authTagLength pins the tag size: Node would otherwise accept a truncated tag, which weakens GCM.
        const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES })
        decipher.setAAD(Buffer.from(aad, 'utf8'))
        decipher.setAuthTag(tag)
        plaintext = Buffer.concat([decipher.update(Buffer.from(envelope.ct, 'base64')), decipher.final()]).toString('utf8')
      } catch (err) {
        log.warn({ key: aad, kid: envelope.kid, err }, 'stored grant does not decrypt (wrong key, moved or tampered); treating it as absent')
        return null
      }
      const grant = parseStored(plaintext, GrantSchema)
      if (grant === undefined) {
        log.warn({ key: aad, kid: envelope.kid }, 'stored grant decrypts to something that is not a grant; treating it as absent')
        return null
      }
      return grant
    }
  }
}

function generatedKey (): EncryptionKey {
  const key = randomBytes(KEY_BYTES)
  return { kid: `ephemeral-${keyId(key)}`, key }
}
