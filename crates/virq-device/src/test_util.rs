use std::sync::Arc;

use crate::testing::{NullBackend, RecordingSink};
use crate::{TransportOptions, VirtioPciDevice};

pub fn test_device(queues: u16, table: Option<u16>) -> (VirtioPciDevice, Arc<RecordingSink>) {
    let mem = crate::VecMemory::new(1 << 20);
    let sink = Arc::new(RecordingSink::new());
    let options = TransportOptions {
        msix_table_size: table,
        ..TransportOptions::default()
    };
    let dev = VirtioPciDevice::new(
        Box::new(NullBackend::new(queues)),
        mem,
        sink.clone(),
        options,
    )
    .unwrap();
    (dev, sink)
}

pub fn common_write16(dev: &mut VirtioPciDevice, off: u64, v: u16) {
    dev.bar_write(0, off, &v.to_le_bytes());
}

pub fn common_read16(dev: &mut VirtioPciDevice, off: u64) -> u16 {
    let mut b = [0u8; 2];
    dev.bar_read(0, off, &mut b);
    u16::from_le_bytes(b)
}
