import type { VaultConfig } from '../../../src/config.js'

/**
 * A VaultConfig for `addr`: token auth, loadConfig's default mounts, no Kubernetes token file and a 2 s
 * timeout; `overrides` set what a test is about (auth method, credentials, timeout).
 */
export function testVaultConfig (addr: string, overrides: Partial<VaultConfig> = {}): VaultConfig {
  return {
    addr,
    namespace: undefined,
    auth: 'token',
    token: undefined,
    roleId: undefined,
    secretId: undefined,
    approleMount: 'approle',
    k8sRole: undefined,
    k8sTokenPath: '/nonexistent',
    k8sMount: 'kubernetes',
    timeoutMs: 2000,
    ...overrides
  }
}
