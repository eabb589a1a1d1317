/*
 * quic_const.h - the QUIC constants the endpoint (quic_listen.c), its
 * connections (quic_conn.c) and the packet-protection engine (quic_tx.c)
 * must agree on; in a header of their own so that none of them includes a
 * layer above it to learn them.
 */
#ifndef KPX_QUIC_CONST_H
#define KPX_QUIC_CONST_H

/* The server's connection IDs: fixed length, the first byte the worker's id. */
#define KPX_QUIC_SCID_LEN 16
/* One GSO send at most: ~64 KB of equal-sized datagrams to one peer. */
#define KPX_QUIC_TXBUF 65000

#endif
