//! The UDP path's steering program in classic BPF (`SO_ATTACH_REUSEPORT_CBPF`): for a DHCP
//! message (the kernel hands the program the UDP payload) it returns the index of the reuseport
//! socket, that is the worker, that owns the client: exactly
//! [`dhcp_common::owner_of_message`], the XDP program's and user space's choice.
//!
//! Classic BPF has two registers (A, X), sixteen scratch words, forward jumps only and no
//! loops, so the contract's walk is unrolled: [`identity::MAX_OPTIONS`] option steps, then
//! [`identity::MAX_HASHED`] hash steps. Every byte read is checked against the message length
//! first (an out-of-bounds read would end the program with 0). A conditional jump reaches at
//! most 255 instructions ahead, so far targets go through a local `ja` trampoline.
//!
//! Must never: disagree with `dhcp_common` (the tests run it through an interpreter against the
//! contract, and `tests/steering.rs` through the kernel), or exceed the 4096 instructions the
//! kernel accepts.

use dhcp_common::{bootp, identity, HASH_MIX, HASH_PRIME, HASH_SHIFTS};
use libc::{
    BPF_ADD, BPF_ALU, BPF_AND, BPF_B, BPF_IND, BPF_JA, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP, BPF_K, BPF_LD, BPF_LDX,
    BPF_LEN, BPF_MEM, BPF_MOD, BPF_MUL, BPF_RET, BPF_RSH, BPF_ST, BPF_W, BPF_X, BPF_XOR,
};

/// Scratch words.
const AT: u32 = 0;
const ID_AT: u32 = 1;
const ID_LEN: u32 = 2;
const HASH: u32 = 3;
const LEN: u32 = 4;
const CODE: u32 = 5;

/// Where a jump goes: a label resolved when the program is laid out.
type Label = usize;

enum Ins {
    Op(u16, u32),
    /// Conditional jump: `code` compares A with `k` (or X), then goes to `t` or `f`.
    Jmp(u16, u32, Label, Label),
    Ja(Label),
    Mark(Label),
}

/// A tiny assembler: instructions with labels, laid out into `sock_filter`s.
#[derive(Default)]
struct Asm {
    ins: Vec<Ins>,
    labels: usize,
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels += 1;
        self.labels - 1
    }

    fn op(&mut self, code: u32, k: u32) {
        self.ins.push(Ins::Op(code as u16, k));
    }

    fn jmp(&mut self, code: u32, k: u32, t: Label, f: Label) {
        self.ins.push(Ins::Jmp((BPF_JMP | code) as u16, k, t, f));
    }

    fn ja(&mut self, to: Label) {
        self.ins.push(Ins::Ja(to));
    }

    fn mark(&mut self, l: Label) {
        self.ins.push(Ins::Mark(l));
    }

    fn ld_mem(&mut self, m: u32) {
        self.op(BPF_LD | BPF_MEM, m);
    }

    fn ldx_mem(&mut self, m: u32) {
        self.op(BPF_LDX | BPF_MEM, m);
    }

    fn st(&mut self, m: u32) {
        self.op(BPF_ST, m);
    }

    fn ld_imm(&mut self, k: u32) {
        self.op(BPF_LD | libc::BPF_IMM, k);
    }

    fn alu(&mut self, op: u32, k: u32) {
        self.op(BPF_ALU | op | BPF_K, k);
    }

    fn alu_x(&mut self, op: u32) {
        self.op(BPF_ALU | op | BPF_X, 0);
    }

    fn tax(&mut self) {
        self.op(libc::BPF_MISC | libc::BPF_TAX, 0);
    }

    /// Lays the program out; `None` if a conditional jump would reach too far.
    fn finish(self) -> Option<Vec<libc::sock_filter>> {
        let mut at = vec![0usize; self.labels];
        let mut n = 0;
        for i in &self.ins {
            match i {
                Ins::Mark(l) => at[*l] = n,
                _ => n += 1,
            }
        }
        let mut out = Vec::with_capacity(n);
        for i in &self.ins {
            let here = out.len() + 1;
            let ins = match *i {
                Ins::Mark(_) => continue,
                Ins::Op(code, k) => libc::sock_filter { code, jt: 0, jf: 0, k },
                Ins::Ja(to) => {
                    libc::sock_filter { code: (BPF_JMP | BPF_JA) as u16, jt: 0, jf: 0, k: (at[to] - here) as u32 }
                }
                Ins::Jmp(code, k, t, f) => {
                    let (jt, jf) = (u8::try_from(at[t] - here).ok()?, u8::try_from(at[f] - here).ok()?);
                    libc::sock_filter { code, jt, jf, k }
                }
            };
            out.push(ins);
        }
        Some(out)
    }
}

/// The steering program for `workers` sockets and hash `key`.
pub fn steering_program(workers: u32, key: u32) -> Vec<libc::sock_filter> {
    let mut a = Asm::default();
    let hash = a.label();
    a.op(BPF_LD | BPF_W | BPF_LEN, 0);
    a.st(LEN);
    a.ld_imm(bootp::MIN_LEN as u32);
    a.st(AT);
    default_identity(&mut a);
    for _ in 0..identity::MAX_OPTIONS {
        option_step(&mut a, hash);
    }
    a.mark(hash);
    hash_steps(&mut a, key);
    finish_steps(&mut a, workers);
    let prog = a.finish().expect("every conditional jump of the steering program is short");
    assert!(prog.len() <= 4096, "classic BPF programs are limited to 4096 instructions");
    prog
}

/// The identity when no client identifier is found: `chaddr[0..6]`.
fn default_identity(a: &mut Asm) {
    a.ld_imm(bootp::CHADDR as u32);
    a.st(ID_AT);
    a.ld_imm(6);
    a.st(ID_LEN);
}

/// One step of the options walk at scratch `AT`; jumps to `done` when the walk ends.
fn option_step(a: &mut Asm, done: Label) {
    let (next, out, pad, cid, other) = (a.label(), a.label(), a.label(), a.label(), a.label());
    // The code byte, if `AT` is inside the message.
    a.ldx_mem(LEN);
    a.ld_mem(AT);
    let read = a.label();
    a.jmp(BPF_JGE | BPF_X, 0, out, read);
    a.mark(read);
    a.ldx_mem(AT);
    a.op(BPF_LD | BPF_B | BPF_IND, 0);
    let (not_pad, not_end) = (a.label(), a.label());
    a.jmp(BPF_JEQ | BPF_K, identity::PAD as u32, pad, not_pad);
    a.mark(not_pad);
    a.jmp(BPF_JEQ | BPF_K, identity::END as u32, out, not_end);
    a.mark(not_end);
    // Every other option has a length byte, which must be inside the message.
    a.st(CODE);
    a.ld_mem(AT);
    a.alu(BPF_ADD, 1);
    a.ldx_mem(LEN);
    let has_len = a.label();
    a.jmp(BPF_JGE | BPF_X, 0, out, has_len);
    a.mark(has_len);
    a.ld_mem(CODE);
    a.jmp(BPF_JEQ | BPF_K, identity::CLIENT_ID as u32, cid, other);
    a.mark(other);
    // AT = (AT + 2 + length) & 0x1fff, as the contract's walk bounds it.
    a.ldx_mem(AT);
    a.op(BPF_LD | BPF_B | BPF_IND, 1);
    a.alu(BPF_ADD, 2);
    a.alu_x(BPF_ADD);
    a.alu(BPF_AND, 0x1fff);
    a.st(AT);
    a.ja(next);
    a.mark(pad);
    a.ld_mem(AT);
    a.alu(BPF_ADD, 1);
    a.st(AT);
    a.ja(next);
    a.mark(cid);
    client_id(a, out, done);
    a.mark(out);
    a.ja(done);
    a.mark(next);
}

/// At a client identifier option (length byte readable): takes its value as the identity if it
/// is non-empty and its hashed part lies inside the message; either way the walk ends.
fn client_id(a: &mut Asm, out: Label, done: Label) {
    let (long, short, take, nonempty) = (a.label(), a.label(), a.label(), a.label());
    a.ldx_mem(AT);
    a.op(BPF_LD | BPF_B | BPF_IND, 1);
    a.jmp(BPF_JEQ | BPF_K, 0, out, nonempty);
    a.mark(nonempty);
    a.jmp(BPF_JGE | BPF_K, identity::MAX_HASHED as u32, long, short);
    a.mark(long);
    a.ld_imm(identity::MAX_HASHED as u32);
    a.mark(short);
    a.st(ID_LEN);
    // AT + 2 + n <= LEN, else not found: back to chaddr.
    a.ldx_mem(AT);
    a.ld_mem(ID_LEN);
    a.alu_x(BPF_ADD);
    a.alu(BPF_ADD, 2);
    a.ldx_mem(LEN);
    let beyond = a.label();
    a.jmp(BPF_JGT | BPF_X, 0, beyond, take);
    a.mark(take);
    a.ld_mem(AT);
    a.alu(BPF_ADD, 2);
    a.st(ID_AT);
    a.ja(done);
    a.mark(beyond);
    default_identity(a);
    a.ja(done);
}

/// Hashes up to `MAX_HASHED` identity bytes, each one read only inside the message.
fn hash_steps(a: &mut Asm, key: u32) {
    let end = a.label();
    a.ld_imm(key);
    a.st(HASH);
    for i in 0..identity::MAX_HASHED as u32 {
        let (more, inside, out) = (a.label(), a.label(), a.label());
        a.ld_mem(ID_LEN);
        a.jmp(BPF_JGT | BPF_K, i, more, out);
        a.mark(more);
        a.ld_mem(ID_AT);
        a.alu(BPF_ADD, i);
        a.ldx_mem(LEN);
        a.jmp(BPF_JGE | BPF_X, 0, out, inside);
        a.mark(inside);
        a.ldx_mem(ID_AT);
        a.op(BPF_LD | BPF_B | BPF_IND, i);
        a.tax();
        a.ld_mem(HASH);
        a.alu_x(BPF_XOR);
        a.alu(BPF_MUL, HASH_PRIME);
        a.st(HASH);
        let next = a.label();
        a.ja(next);
        a.mark(out);
        a.ja(end);
        a.mark(next);
    }
    a.mark(end);
}

/// `finish_hash`, then the worker: `hash % workers`.
fn finish_steps(a: &mut Asm, workers: u32) {
    a.ld_mem(HASH);
    a.tax();
    a.alu(BPF_RSH, HASH_SHIFTS.0);
    a.alu_x(BPF_XOR);
    a.alu(BPF_MUL, HASH_MIX);
    a.tax();
    a.alu(BPF_RSH, HASH_SHIFTS.1);
    a.alu_x(BPF_XOR);
    a.alu(BPF_MOD, workers.max(1));
    a.op(BPF_RET | libc::BPF_A, 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcp_common::owner_of_message;

    /// Runs a classic BPF program over `pkt` as the kernel would (the subset used here).
    /// Panics on an out-of-bounds read: the program must check first.
    fn run(prog: &[libc::sock_filter], pkt: &[u8]) -> u32 {
        let (mut a, mut x, mut m, mut pc) = (0u32, 0u32, [0u32; 16], 0usize);
        loop {
            let i = prog[pc];
            pc += 1;
            let k = i.k;
            let code = i.code as u32;
            let src = if code & BPF_X != 0 { x } else { k };
            match code & 0x07 {
                BPF_LD => match code {
                    c if c == BPF_LD | BPF_W | BPF_LEN => a = pkt.len() as u32,
                    c if c == BPF_LD | BPF_MEM => a = m[k as usize],
                    c if c == BPF_LD | libc::BPF_IMM => a = k,
                    c if c == BPF_LD | BPF_B | BPF_IND => a = pkt[(x + k) as usize] as u32,
                    _ => panic!("unexpected load {code:#x}"),
                },
                BPF_LDX => x = m[k as usize],
                BPF_ST => m[k as usize] = a,
                BPF_ALU => {
                    a = match code & 0xf0 {
                        BPF_ADD => a.wrapping_add(src),
                        BPF_MUL => a.wrapping_mul(src),
                        BPF_AND => a & src,
                        BPF_XOR => a ^ src,
                        BPF_RSH => a >> src,
                        BPF_MOD => a % src,
                        op => panic!("unexpected alu {op:#x}"),
                    }
                }
                BPF_JMP => {
                    let taken = match code & 0xf0 {
                        BPF_JA => {
                            pc += k as usize;
                            continue;
                        }
                        BPF_JEQ => a == src,
                        BPF_JGT => a > src,
                        BPF_JGE => a >= src,
                        op => panic!("unexpected jump {op:#x}"),
                    };
                    pc += if taken { i.jt } else { i.jf } as usize;
                }
                BPF_RET => return a,
                _ if code == libc::BPF_MISC | libc::BPF_TAX => x = a,
                _ if code == libc::BPF_MISC | libc::BPF_TXA => a = x,
                _ => panic!("unexpected instruction {code:#x}"),
            }
        }
    }

    /// Messages that exercise every branch: pads, ends, lengths, identifiers short, long,
    /// empty, cut off, late, and messages cut short anywhere.
    fn samples() -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut seed = 0x1234_5678u32;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for n in 0..3000 {
            let mut m = vec![0u8; 240];
            m[28..34].copy_from_slice(&rnd().to_be_bytes().repeat(2)[..6]);
            m[236..240].copy_from_slice(&[99, 130, 83, 99]);
            let opts = rnd() % 20;
            for _ in 0..opts {
                match rnd() % 6 {
                    0 => m.push(0),
                    1 => {
                        let len = (rnd() % 40) as u8;
                        m.extend([61, len]);
                        m.extend((0..len).map(|_| rnd() as u8));
                    }
                    _ => {
                        let len = (rnd() % 12) as u8;
                        m.extend([(rnd() % 250) as u8 + 1, len]);
                        m.extend((0..len).map(|_| rnd() as u8));
                    }
                }
            }
            if rnd() % 2 == 0 {
                m.push(255);
            }
            if n % 7 == 0 {
                let cut = rnd() as usize % (m.len() + 1);
                m.truncate(cut);
            }
            out.push(m);
        }
        out
    }

    #[test]
    fn classic_bpf_agrees_with_the_contract() {
        for (workers, key) in [(1u32, 0u32), (2, 7), (3, 0xdead_beef), (4, 1), (13, 0x9e37_79b9)] {
            let prog = steering_program(workers, key);
            for m in samples() {
                assert_eq!(run(&prog, &m), owner_of_message(&m[..], workers, key), "{workers} {key:#x} {m:?}");
            }
        }
    }

    #[test]
    fn the_program_fits_the_kernel() {
        let prog = steering_program(64, 1);
        assert!(prog.len() <= 4096, "{}", prog.len());
    }
}
