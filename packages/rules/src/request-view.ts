/**
 * request-view - the per-request values rules compare against, derived from
 * Facts once per request instead of once per rule: the parsed client address
 * and lowercased names and domains.
 *
 * The client address is parsed by whoever built the Facts (`clientIp`);
 * only Facts without it (tests, `levee explain` input) are parsed here.
 *
 * Only what the ruleset uses is computed (`ViewNeeds`, decided at compile
 * time), so a ruleset without sender patterns never lowercases a sender.
 */

import type { Facts } from './facts.js';
import { formatIp, parseIp, type IpAddress } from './ip.js';

export interface ViewNeeds {
  ip: boolean;
  clientAddressText: boolean;
  sender: boolean;
  recipient: boolean;
  saslUsername: boolean;
  heloName: boolean;
  clientName: boolean;
}

export function noNeeds(): ViewNeeds {
  return { ip: false, clientAddressText: false, sender: false, recipient: false, saslUsername: false, heloName: false, clientName: false };
}

export interface RequestView {
  readonly facts: Facts;
  readonly ip: IpAddress | undefined;
  /** Canonical client address text, or the lowercased raw text when it is not an IP. */
  readonly clientAddressText: string | undefined;
  readonly senderLower: string | undefined;
  readonly senderDomain: string | undefined;
  readonly recipientLower: string | undefined;
  readonly recipientDomain: string | undefined;
  readonly saslLower: string | undefined;
  readonly saslDomain: string | undefined;
  /** HELO name and client name, lowercased, trailing dot removed. */
  readonly heloLower: string | undefined;
  readonly clientNameLower: string | undefined;
  /**
   * Memo of the last {client_network} key rendered for this request: rules
   * usually share one prefix length, and formatting IPv6 is the costliest
   * step of rendering a key. -1 = empty.
   */
  netMemoLen: number;
  netMemoKey: string | undefined;
}

function hostForm(s: string): string {
  const l = s.toLowerCase();
  return l.length > 1 && l.endsWith('.') ? l.slice(0, -1) : l;
}

/** Lowercased domain after the last "@", trailing dot removed; undefined when there is none. */
export function domainOf(lowerAddress: string): string | undefined {
  const at = lowerAddress.lastIndexOf('@');
  if (at < 0 || at === lowerAddress.length - 1) return undefined;
  return hostForm(lowerAddress.slice(at + 1));
}

export function buildView(facts: Facts, needs: ViewNeeds): RequestView {
  const given = facts.clientIp;
  const ip = given ?? (needs.ip && facts.clientAddress !== undefined ? parseIp(facts.clientAddress) : undefined);
  let clientAddressText: string | undefined;
  if (needs.clientAddressText && facts.clientAddress !== undefined) {
    clientAddressText = given !== undefined ? facts.clientAddress : ip !== undefined ? formatIp(ip) : facts.clientAddress.toLowerCase();
  }
  const senderLower = needs.sender && facts.sender !== undefined ? facts.sender.toLowerCase() : undefined;
  const recipientLower = needs.recipient && facts.recipient !== undefined ? facts.recipient.toLowerCase() : undefined;
  const saslLower =
    needs.saslUsername && facts.saslUsername !== undefined && facts.saslUsername !== '' ? facts.saslUsername.toLowerCase() : undefined;
  return {
    facts,
    ip,
    clientAddressText,
    senderLower,
    senderDomain: senderLower !== undefined ? domainOf(senderLower) : undefined,
    recipientLower,
    recipientDomain: recipientLower !== undefined ? domainOf(recipientLower) : undefined,
    saslLower,
    saslDomain: saslLower !== undefined ? domainOf(saslLower) : undefined,
    heloLower: needs.heloName && facts.heloName !== undefined && facts.heloName !== '' ? hostForm(facts.heloName) : undefined,
    clientNameLower: needs.clientName && facts.clientName !== undefined && facts.clientName !== '' ? hostForm(facts.clientName) : undefined,
    netMemoLen: -1,
    netMemoKey: undefined,
  };
}
