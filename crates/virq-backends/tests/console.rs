//! virtio-console behaviour against virtio 1.2 section 5.3 (single port, no MULTIPORT).

use std::sync::{Arc, Mutex};

use virq_backends::console::{
    CONSOLE_CONFIG_LEN, MAX_TRANSMIT_PER_CHAIN, RECEIVEQ, TRANSMITQ, VIRTIO_CONSOLE_F_EMERG_WRITE,
    VIRTIO_CONSOLE_F_SIZE,
};
use virq_backends::{Console, ConsoleConfig};
use virq_device::testing::*;
use virq_device::{BackendError, VirtioBackend};

#[test]
fn identity_features_and_config_5_3_3() {
    let plain = Console::default();
    assert_eq!(plain.device_id(), 3);
    assert_eq!(plain.num_queues(), 2);
    assert_eq!(plain.config_len(), CONSOLE_CONFIG_LEN);
    assert_eq!(plain.device_features(), 1 << VIRTIO_CONSOLE_F_EMERG_WRITE);
    assert_eq!(config_u64(&plain, 0, 4), 0);

    let mut sized = Console::new(ConsoleConfig {
        size: Some((132, 43)),
        ..ConsoleConfig::default()
    });
    assert_ne!(sized.device_features() & (1 << VIRTIO_CONSOLE_F_SIZE), 0);
    assert_eq!(config_u64(&sized, 0, 2), 132);
    assert_eq!(config_u64(&sized, 2, 2), 43);
    assert!(sized.set_size(80, 25));
    assert!(!sized.set_size(80, 25));
    assert_eq!(config_u64(&sized, 0, 4), 80 | (25 << 16));
    // Without F_SIZE there is no size to change.
    assert!(!Console::default().set_size(80, 25));
}

#[test]
fn transmitted_bytes_reach_the_host_5_3_6() {
    let mem = guest_memory();
    let mut tx = TestQueue::new(&mem, 0x8000, 16);
    let mut console = Console::default();
    let lines = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let sink = Arc::clone(&lines);
    console.set_line_callback(Box::new(move |line| {
        sink.lock().unwrap().push(line.to_vec())
    }));

    write_guest(&mem, DATA_BASE, b"hello\nwor");
    write_guest(&mem, DATA_BASE + 0x100, b"ld\n!");
    let h1 = tx.add_chain(&[r(DATA_BASE, 9), r(DATA_BASE + 0x100, 4)]);
    assert_eq!(tx.process(&mut console, TRANSMITQ).unwrap().used, 1);
    // transmitq buffers are device-readable: the device writes nothing back.
    assert_eq!(tx.used(0), (u32::from(h1), 0));
    assert_eq!(console.take_output(), b"hello\nworld\n!");
    assert!(console.take_output().is_empty());
    assert_eq!(
        *lines.lock().unwrap(),
        vec![b"hello".to_vec(), b"world".to_vec()]
    );
    assert_eq!(console.counters().tx_bytes, 13);
    assert!(!console.has_pending_input(TRANSMITQ));
}

#[test]
fn output_buffer_is_bounded_and_counts_drops() {
    let mem = guest_memory();
    let mut tx = TestQueue::new(&mem, 0x8000, 16);
    let mut console = Console::new(ConsoleConfig {
        output_limit: 10,
        ..ConsoleConfig::default()
    });
    write_guest(&mem, DATA_BASE, &pattern(25, 1));
    tx.add_chain(&[r(DATA_BASE, 25)]);
    tx.process(&mut console, TRANSMITQ).unwrap();
    assert_eq!(console.take_output(), &pattern(25, 1)[..10]);
    assert_eq!(console.counters().output_dropped, 15);
    // Once taken, there is room again.
    tx.add_chain(&[r(DATA_BASE, 4)]);
    tx.process(&mut console, TRANSMITQ).unwrap();
    assert_eq!(console.take_output(), &pattern(25, 1)[..4]);
}

#[test]
fn host_input_is_delivered_to_receive_buffers_5_3_6() {
    let mem = guest_memory();
    let mut rx = TestQueue::new(&mem, 0, 16);
    let mut console = Console::default();

    // Buffers offered with no input waiting stay with the device, unused.
    rx.add_chain(&[w(DATA_BASE, 2)]);
    rx.add_chain(&[w(DATA_BASE + 0x100, 8)]);
    assert!(!console.has_pending_input(RECEIVEQ));
    assert_eq!(rx.process(&mut console, RECEIVEQ).unwrap().used, 0);
    assert_eq!(rx.used_idx(), 0);

    assert_eq!(console.push_input(b"abc"), 3);
    assert!(console.has_pending_input(RECEIVEQ));
    assert!(!console.has_pending_input(TRANSMITQ));
    assert_eq!(rx.process(&mut console, RECEIVEQ).unwrap().used, 2);
    assert_eq!(rx.used(0), (0, 2));
    assert_eq!(rx.used(1), (1, 1));
    assert_eq!(read_guest(&mem, DATA_BASE, 2), b"ab");
    assert_eq!(read_guest(&mem, DATA_BASE + 0x100, 2), b"c\0");
    assert!(!console.has_pending_input(RECEIVEQ));
    assert_eq!(console.counters().rx_bytes, 3);

    // More input than buffers: the rest waits for the next buffer.
    console.push_input(b"xyz");
    assert_eq!(rx.process(&mut console, RECEIVEQ).unwrap().used, 0);
    assert_eq!(console.pending_input(), 3);
    rx.add_chain(&[w(DATA_BASE + 0x200, 2), w(DATA_BASE + 0x300, 16)]);
    assert_eq!(rx.process(&mut console, RECEIVEQ).unwrap().used, 1);
    assert_eq!(rx.used(2).1, 3);
    assert_eq!(read_guest(&mem, DATA_BASE + 0x200, 2), b"xy");
    assert_eq!(read_guest(&mem, DATA_BASE + 0x300, 1), b"z");
}

#[test]
fn one_huge_transmit_chain_is_read_only_up_to_the_cap() {
    let mem = guest_memory();
    let mut tx = TestQueue::new(&mem, 0x8000, 16);
    let mut console = Console::new(ConsoleConfig {
        output_limit: 4 * 1024 * 1024,
        ..ConsoleConfig::default()
    });
    // Eight descriptors all naming the same 1 MiB: 8 MiB of output in one chain.
    let bufs: Vec<Buf> = (0..8).map(|_| r(DATA_BASE, 1024 * 1024)).collect();
    tx.add_chain(&bufs);
    assert_eq!(tx.process(&mut console, TRANSMITQ).unwrap().used, 1);
    assert_eq!(console.take_output().len() as u64, MAX_TRANSMIT_PER_CHAIN);
    assert_eq!(
        console.counters().output_dropped,
        8 * 1024 * 1024 - MAX_TRANSMIT_PER_CHAIN
    );
}

#[test]
fn input_queue_is_bounded() {
    let mut console = Console::new(ConsoleConfig {
        input_limit: 5,
        ..ConsoleConfig::default()
    });
    assert_eq!(console.push_input(b"1234"), 4);
    assert_eq!(console.push_input(b"5678"), 1);
    assert_eq!(console.pending_input(), 5);
    assert_eq!(console.counters().input_dropped, 3);
}

#[test]
fn receive_buffer_outside_ram_keeps_the_input() {
    let mem = guest_memory();
    let mut rx = TestQueue::new(&mem, 0, 16);
    let mut console = Console::default();
    console.push_input(b"keep");
    rx.add_chain(&[w(MEM_SIZE + 0x100, 16)]);
    assert_eq!(rx.process(&mut console, RECEIVEQ).unwrap().used, 1);
    assert_eq!(rx.used(0).1, 0);
    assert_eq!(console.pending_input(), 4);
    assert_eq!(console.counters().bad_buffers, 1);
}

#[test]
fn emergency_write_emits_a_character_5_3_3() {
    let mut console = Console::default();
    assert!(!console.write_config(8, &u32::from(b'!').to_le_bytes()));
    // Writes elsewhere in the configuration change nothing.
    assert!(!console.write_config(0, &[1, 2]));
    assert_eq!(console.take_output(), b"!");
    assert_eq!(console.counters().emergency_writes, 1);
}

#[test]
fn snapshot_carries_pending_input_and_output() {
    let mem = guest_memory();
    let mut tx = TestQueue::new(&mem, 0x8000, 16);
    let mut console = Console::default();
    console.push_input(b"typed");
    write_guest(&mem, DATA_BASE, b"printed");
    tx.add_chain(&[r(DATA_BASE, 7)]);
    tx.process(&mut console, TRANSMITQ).unwrap();
    let snap = console.snapshot();

    let mut restored = Console::default();
    restored.restore(&snap).unwrap();
    assert_eq!(restored.pending_input(), 5);
    assert!(restored.has_pending_input(RECEIVEQ));
    assert_eq!(restored.take_output(), b"printed");
    assert_eq!(restored.counters(), console.counters());

    let mut sized = Console::new(ConsoleConfig {
        size: Some((80, 25)),
        ..ConsoleConfig::default()
    });
    assert!(matches!(
        sized.restore(&snap),
        Err(BackendError::BadSnapshot(_))
    ));
    let mut oversized = snap.clone();
    oversized["config"]["input_limit"] = serde_json::json!(2);
    assert!(matches!(
        restored.restore(&oversized),
        Err(BackendError::BadSnapshot(_))
    ));
}

#[test]
fn reset_keeps_host_buffers() {
    let mut console = Console::default();
    console.push_input(b"x");
    console.activate(1);
    console.reset();
    assert!(console.has_pending_input(RECEIVEQ));
    assert_eq!(console.counters().resets, 1);
}
