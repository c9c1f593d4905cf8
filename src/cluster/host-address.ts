// Which addresses a rank binds. A single-host job (MASTER_ADDR on loopback) must never listen on a
// routable interface, so every socket binds the loopback address. A multi-host job binds the one
// interface that routes to the master: the address peers can reach us on, and no other.

import * as dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { isLoopbackHost } from './dist-env';

/** MASTER_ADDR as an IP address (host names resolved once, here). */
export async function resolveHost(host: string): Promise<string> {
  if (isIP(host) !== 0) return host;
  if (host === 'localhost') return '127.0.0.1';
  const { address } = await lookup(host);
  return address;
}

/**
 * The address of this host's interface that routes to `masterIp`, found by "connecting" a UDP socket
 * (no packet is sent) and reading its local address; loopback for a loopback master.
 */
export async function localAddressToward(masterIp: string): Promise<string> {
  if (isLoopbackHost(masterIp)) return isIP(masterIp) === 6 ? '::1' : '127.0.0.1';
  const family = isIP(masterIp) === 6 ? 'udp6' : 'udp4';
  const sock = dgram.createSocket(family);
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.connect(9, masterIp, () => resolve());
    });
    return sock.address().address;
  } finally {
    sock.close();
  }
}

/** A ZeroMQ TCP endpoint; IPv6 literals go in brackets. */
export function tcpEndpoint(ip: string, port: number | '*'): string {
  return isIP(ip) === 6 ? `tcp://[${ip}]:${port}` : `tcp://${ip}:${port}`;
}

export function isIpv6(ip: string): boolean {
  return isIP(ip) === 6;
}
