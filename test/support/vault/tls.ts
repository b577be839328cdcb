import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** A throwaway certificate authority and a server certificate it signed for 127.0.0.1 and localhost. */
export interface TestPki {
  readonly dir: string
  /** PEM of the CA certificate (what VAULT_CACERT points at). */
  readonly caCertFile: string
  readonly caCert: string
  /** The server's key and certificate (for the TLS stand-in). */
  readonly serverKey: string
  readonly serverCert: string
}

/**
 * Generates a self-signed CA and a server certificate with the openssl CLI (P-256 keys, valid 1 day), in
 * a fresh temp directory. .ci/run installs openssl where it is missing.
 */
export function createTestPki (commonName = 'credential-broker test CA'): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'cb-pki-'))
  const file = (name: string): string => join(dir, name)
  const openssl = (...args: string[]): void => { execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' }) }
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  openssl('req', '-x509', ...ec, '-keyout', file('ca.key'), '-out', file('ca.pem'), '-days', '1', '-subj', `/CN=${commonName}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
  openssl('req', ...ec, '-keyout', file('server.key'), '-out', file('server.csr'), '-subj', '/CN=127.0.0.1')
  writeFileSync(file('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n')
  openssl('x509', '-req', '-in', file('server.csr'), '-CA', file('ca.pem'), '-CAkey', file('ca.key'), '-CAcreateserial',
    '-out', file('server.pem'), '-days', '1', '-extfile', file('server.ext'))
  return {
    dir,
    caCertFile: file('ca.pem'),
    caCert: readFileSync(file('ca.pem'), 'utf8'),
    serverKey: readFileSync(file('server.key'), 'utf8'),
    serverCert: readFileSync(file('server.pem'), 'utf8')
  }
}
