/*
 * A small virtio-pci modern driver core for virtio-blk, tested against virq's device through
 * include/virq.h alone: no VM, no socket. Copy it as the start of your own driver's tests.
 *
 * What a platform does (guest RAM, BAR placement, delivering interrupts) is at the top; the
 * driver (capabilities, feature negotiation, vectors with fallback, queues, I/O, reset) below
 * it; the scenarios at the bottom. Every scenario prints what it saw and ends in PASS or FAIL.
 *
 * Build: see the Makefile next to this file (cc, warnings as errors, libvirq_capi.a).
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "virq.h"

#define RAM_GPA 0x100000u     /* guest RAM: 1 MiB at guest-physical 1 MiB */
#define RAM_SIZE (1u << 20)
#define BAR_BASE 0xE0000000u  /* where this "firmware" places BARs */
#define MSI_ADDR 0xFEE00000u  /* LAPIC window; MSI data = 0x40 + vector */
#define MSI_DATA(v) (0x40u + (v))
#define NO_VECTOR 0xFFFFu
#define QSIZE 16u
#define SECTOR 512u
#define DISK_SECTORS 64u

/* PCI and virtio register numbers (PCI 3.0 ch. 6; virtio 1.2, 4.1.4). */
enum { PCI_COMMAND = 0x04, PCI_STATUS = 0x06, PCI_BAR0 = 0x10, PCI_CAP_PTR = 0x34 };
enum { CMD_MEMORY = 1 << 1, CMD_BUS_MASTER = 1 << 2 };
enum { CAP_VENDOR = 0x09, CAP_MSIX = 0x11 };
enum { CFG_COMMON = 1, CFG_NOTIFY = 2, CFG_ISR = 3, CFG_DEVICE = 4 };
enum {
    C_DFSELECT = 0x00, C_DF = 0x04, C_GFSELECT = 0x08, C_GF = 0x0C, C_MSIX_CONFIG = 0x10,
    C_NUM_QUEUES = 0x12, C_STATUS = 0x14, C_CONFIG_GEN = 0x15, C_Q_SELECT = 0x16,
    C_Q_SIZE = 0x18, C_Q_VECTOR = 0x1A, C_Q_ENABLE = 0x1C, C_Q_NOTIFY_OFF = 0x1E,
    C_Q_DESC = 0x20, C_Q_DRIVER = 0x28, C_Q_DEVICE = 0x30
};
enum { S_ACK = 1, S_DRIVER = 2, S_DRIVER_OK = 4, S_FEATURES_OK = 8 };
enum { DESC_NEXT = 1, DESC_WRITE = 2 };
enum { BLK_T_IN = 0, BLK_T_OUT = 1 };

/* ------------------------------------------------------------------ the platform */

struct platform {
    uint8_t *ram;
    virq_device *dev;
    unsigned msi[8];        /* MSI-X messages seen per vector */
    unsigned intx_raises;
    bool intx_level;
};

static void on_msi(void *user, uint64_t address, uint32_t data) {
    struct platform *p = user;
    if (address == MSI_ADDR && data >= MSI_DATA(0) && data < MSI_DATA(8))
        p->msi[data - MSI_DATA(0)]++;
}

static void on_intx(void *user, bool level) {
    struct platform *p = user;
    p->intx_raises += level;
    p->intx_level = level;
}

static void *host(struct platform *p, uint64_t gpa) { return p->ram + (gpa - RAM_GPA); }

static const char *scenario;
static int failures;

static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("[%s] FAIL: ", scenario);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    failures++;
}

/* Every refusal of the library is a bug in this driver: report it and stop. */
static void must(virq_status s, const char *what) {
    if (s != VIRQ_STATUS_OK) {
        printf("[%s] FAIL: %s: %s (%s)\n", scenario, what, virq_strerror(s), virq_last_error());
        exit(1);
    }
}

static uint32_t cfg_rd(struct platform *p, uint16_t off, uint32_t width) {
    uint32_t v;
    must(virq_config_read(p->dev, off, width, &v), "config read");
    return v;
}

static void cfg_wr(struct platform *p, uint16_t off, uint32_t width, uint32_t v) {
    must(virq_config_write(p->dev, off, width, v), "config write");
}

static uint64_t rd(struct platform *p, uint64_t addr, uint32_t width) {
    uint64_t v;
    must(virq_mmio_read(p->dev, addr, width, &v), "mmio read");
    return v;
}

static void wr(struct platform *p, uint64_t addr, uint32_t width, uint64_t v) {
    must(virq_mmio_write(p->dev, addr, width, v), "mmio write");
}

/* Firmware: size every BAR with the all-ones probe and place it naturally aligned. */
static void place_bars(struct platform *p) {
    uint64_t next = BAR_BASE;
    for (uint16_t i = 0; i < 6; i++) {
        uint16_t off = PCI_BAR0 + 4 * i;
        cfg_wr(p, off, 4, 0xFFFFFFFFu);
        uint64_t mask = cfg_rd(p, off, 4);
        if (mask == 0)
            continue;
        bool is64 = ((mask >> 1) & 3) == 2;
        if (is64) {
            cfg_wr(p, off + 4, 4, 0xFFFFFFFFu);
            mask |= (uint64_t)cfg_rd(p, off + 4, 4) << 32;
        } else {
            mask |= 0xFFFFFFFF00000000ull;
        }
        uint64_t size = ~(mask & ~0xFull) + 1;
        next = (next + size - 1) & ~(size - 1);
        cfg_wr(p, off, 4, (uint32_t)next);
        if (is64) {
            cfg_wr(p, off + 4, 4, (uint32_t)(next >> 32));
            i++;
        }
        next += size;
    }
    cfg_wr(p, PCI_COMMAND, 2, CMD_MEMORY | CMD_BUS_MASTER);
}

/* ------------------------------------------------------------------ the driver */

struct vq {
    uint64_t desc, avail, used, notify;
    uint16_t avail_idx, last_used, vector;
};

enum mode { MODE_PER_QUEUE, MODE_SHARED, MODE_INTX };
static const char *mode_name[] = {"per-queue MSI-X", "shared MSI-X", "INTx"};

struct blk {
    struct platform *p;
    uint64_t common, notify, isr, devcfg, msix_table;
    uint32_t notify_mult;
    uint16_t msix_cap, msix_size, nq;
    enum mode mode;
    struct vq q[2];
};

static uint64_t bar_address(struct platform *p, uint8_t bar) {
    uint64_t lo = cfg_rd(p, PCI_BAR0 + 4 * bar, 4) & ~0xFull;
    return lo | (uint64_t)cfg_rd(p, PCI_BAR0 + 4 * bar + 4, 4) << 32;
}

/* Walk the capability list as a driver must (virtio 1.2, 4.1.4). */
static void find_capabilities(struct blk *b) {
    struct platform *p = b->p;
    for (uint16_t at = cfg_rd(p, PCI_CAP_PTR, 1); at; at = cfg_rd(p, at + 1, 1)) {
        uint8_t id = cfg_rd(p, at, 1);
        if (id == CAP_MSIX) {
            b->msix_cap = at;
            b->msix_size = (cfg_rd(p, at + 2, 2) & 0x7FF) + 1;
            uint32_t t = cfg_rd(p, at + 4, 4);
            b->msix_table = bar_address(p, t & 7) + (t & ~7u);
        } else if (id == CAP_VENDOR) {
            uint64_t where = bar_address(p, cfg_rd(p, at + 4, 1)) + cfg_rd(p, at + 8, 4);
            switch (cfg_rd(p, at + 3, 1)) {
            case CFG_COMMON: b->common = where; break;
            case CFG_NOTIFY: b->notify = where; b->notify_mult = cfg_rd(p, at + 16, 4); break;
            case CFG_ISR: b->isr = where; break;
            case CFG_DEVICE: b->devcfg = where; break;
            }
        }
    }
}

static void set_status(struct blk *b, uint8_t s) { wr(b->p, b->common + C_STATUS, 1, s); }

/* Reset, acknowledge, negotiate VERSION_1 (and MQ with more than one queue). */
static bool negotiate(struct blk *b) {
    set_status(b, 0);
    if (rd(b->p, b->common + C_STATUS, 1) != 0)
        return false;
    set_status(b, S_ACK);
    set_status(b, S_ACK | S_DRIVER);
    wr(b->p, b->common + C_DFSELECT, 4, 1);
    uint64_t features = rd(b->p, b->common + C_DF, 4) << 32;
    wr(b->p, b->common + C_DFSELECT, 4, 0);
    features |= rd(b->p, b->common + C_DF, 4);
    uint64_t want = (1ull << 32) | (b->nq > 1 ? 1ull << 12 : 0);
    if ((features & want) != want)
        return false;
    wr(b->p, b->common + C_GFSELECT, 4, 1);
    wr(b->p, b->common + C_GF, 4, want >> 32);
    wr(b->p, b->common + C_GFSELECT, 4, 0);
    wr(b->p, b->common + C_GF, 4, (uint32_t)want);
    set_status(b, S_ACK | S_DRIVER | S_FEATURES_OK);
    return rd(b->p, b->common + C_STATUS, 1) & S_FEATURES_OK;
}

static void msix_enable(struct blk *b, bool on) {
    uint32_t ctl = cfg_rd(b->p, b->msix_cap + 2, 2);
    cfg_wr(b->p, b->msix_cap + 2, 2, on ? ctl | 0x8000 : ctl & ~0x8000u);
}

/* Write a vector selector and return what the device reads back (0xFFFF: refused). */
static uint16_t set_vector(struct blk *b, uint64_t reg, uint16_t v) {
    wr(b->p, reg, 2, v);
    return rd(b->p, reg, 2);
}

/* Program the selectors for `mode`; false when a read-back says the table is too small. */
static bool try_vectors(struct blk *b, enum mode mode) {
    if (mode == MODE_INTX)
        return true;
    for (uint16_t e = 0; e < b->msix_size && e < 8; e++) {   /* entries: address, data, unmask */
        wr(b->p, b->msix_table + 16 * e, 8, MSI_ADDR);
        wr(b->p, b->msix_table + 16 * e + 8, 4, MSI_DATA(e));
        wr(b->p, b->msix_table + 16 * e + 12, 4, 0);
    }
    if (set_vector(b, b->common + C_MSIX_CONFIG, 0) != 0)
        return false;
    for (uint16_t i = 0; i < b->nq; i++) {
        uint16_t want = mode == MODE_PER_QUEUE ? 1 + i : 1;
        wr(b->p, b->common + C_Q_SELECT, 2, i);
        uint16_t got = set_vector(b, b->common + C_Q_VECTOR, want);
        if (got != want) {
            printf("[%s] q%u vector %u read back 0x%04x: MSI-X table of %u too small for %s\n",
                   scenario, i, want, got, b->msix_size, mode_name[mode]);
            return false;
        }
        b->q[i].vector = got;
    }
    return true;
}

static void setup_queue(struct blk *b, uint16_t i) {
    struct vq *q = &b->q[i];
    uint64_t base = RAM_GPA + 0x10000u * (i + 1);
    q->desc = base;
    q->avail = base + 0x1000;
    q->used = base + 0x2000;
    q->avail_idx = q->last_used = 0;
    memset(host(b->p, base), 0, 0x3000);
    wr(b->p, b->common + C_Q_SELECT, 2, i);
    wr(b->p, b->common + C_Q_SIZE, 2, QSIZE);
    wr(b->p, b->common + C_Q_DESC, 8, q->desc);
    wr(b->p, b->common + C_Q_DRIVER, 8, q->avail);
    wr(b->p, b->common + C_Q_DEVICE, 8, q->used);
    q->notify = b->notify + rd(b->p, b->common + C_Q_NOTIFY_OFF, 2) * b->notify_mult;
    wr(b->p, b->common + C_Q_ENABLE, 2, 1);
}

/* Bring the device up: vectors per queue, else shared, else INTx (what Linux does). */
static bool bring_up(struct blk *b) {
    if (!negotiate(b))
        return false;
    enum mode mode = b->msix_cap ? MODE_PER_QUEUE : MODE_INTX;
    if (b->msix_cap)
        msix_enable(b, true);
    while (!try_vectors(b, mode)) {
        mode++;
        printf("[%s] falling back to %s\n", scenario, mode_name[mode]);
        if (mode == MODE_INTX) {
            set_vector(b, b->common + C_MSIX_CONFIG, NO_VECTOR);
            for (uint16_t i = 0; i < b->nq; i++) {
                wr(b->p, b->common + C_Q_SELECT, 2, i);
                set_vector(b, b->common + C_Q_VECTOR, NO_VECTOR);
            }
            msix_enable(b, false);
        }
    }
    b->mode = mode;
    for (uint16_t i = 0; i < b->nq; i++)
        setup_queue(b, i);
    set_status(b, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
    return true;
}

/* The interrupt handler for INTx: read ISR status (read-to-clear), return its bits. */
static uint8_t intx_handler(struct blk *b) {
    if (!b->p->intx_level)
        return 0;
    uint8_t isr = rd(b->p, b->isr, 1);
    if (b->p->intx_level)
        fail("INTx still high after the ISR read");
    return isr;
}

/* Post one request on queue `qi` (header, 512 data bytes at `data_gpa`, status) and notify:
 * the device processes it, synchronously, inside the notify write. */
static void submit(struct blk *b, uint16_t qi, uint32_t type, uint64_t sector, uint64_t data_gpa) {
    struct vq *q = &b->q[qi];
    struct platform *p = b->p;
    uint64_t hdr = RAM_GPA + 0x80000u + 0x100u * qi, status = hdr + 0x40;
    memcpy(host(p, hdr), &type, 4);
    memset(host(p, hdr + 4), 0, 4);
    memcpy(host(p, hdr + 8), &sector, 8);
    *(uint8_t *)host(p, status) = 0xFF;
    struct { uint64_t addr; uint32_t len; uint16_t flags, next; } d[3] = {
        {hdr, 16, DESC_NEXT, 1},
        {data_gpa, SECTOR, DESC_NEXT | (type == BLK_T_IN ? DESC_WRITE : 0), 2},
        {status, 1, DESC_WRITE, 0},
    };
    memcpy(host(p, q->desc), d, sizeof d);
    uint16_t *avail = host(p, q->avail);
    avail[2 + q->avail_idx % QSIZE] = 0;
    atomic_thread_fence(memory_order_release);     /* ring entries before the index */
    avail[1] = ++q->avail_idx;
    atomic_thread_fence(memory_order_seq_cst);     /* index before the notify */
    wr(p, q->notify, 2, qi);
}

/* The request completed: used.idx moved by one and the status byte is VIRTIO_BLK_S_OK. */
static bool completed(struct blk *b, uint16_t qi) {
    struct vq *q = &b->q[qi];
    uint16_t used_idx = ((volatile uint16_t *)host(b->p, q->used))[1];
    uint8_t status = *(uint8_t *)host(b->p, RAM_GPA + 0x80040u + 0x100u * qi);
    if (used_idx != (uint16_t)(q->last_used + 1) || status != 0)
        return fail("q%u: used.idx %u (expected %u), status %u", qi, used_idx,
                    q->last_used + 1, status), false;
    q->last_used = used_idx;
    return true;
}

/* One request, its interrupt (one message on the queue's vector, or INTx with ISR bit 0),
 * and its completion. */
static bool blk_request(struct blk *b, uint16_t qi, uint32_t type, uint64_t sector,
                        uint64_t data_gpa) {
    struct platform *p = b->p;
    uint16_t v = b->q[qi].vector & 7;
    unsigned msi = p->msi[v], raises = p->intx_raises;
    submit(b, qi, type, sector, data_gpa);
    if (b->mode == MODE_INTX) {
        if (p->intx_raises != raises + 1 || !(intx_handler(b) & 1))
            return fail("q%u: no INTx with ISR bit 0", qi), false;
    } else if (p->msi[v] != msi + 1) {
        return fail("q%u: no MSI-X message on vector %u", qi, v), false;
    }
    return completed(b, qi);
}

static uint8_t pattern(uint64_t offset, uint8_t seed) {
    return (uint8_t)((offset >> 9) * 37 + offset + seed);
}

/* Read one sector per queue and check it; write one per queue and check the disk. */
static bool io_round(struct blk *b, uint8_t seed) {
    struct platform *p = b->p;
    uint64_t buf = RAM_GPA + 0x90000u;
    uint8_t *data = host(p, buf), disk[SECTOR];
    for (uint16_t qi = 0; qi < b->nq; qi++) {
        uint64_t rs = 3 + qi, ws = 40 + qi;
        if (!blk_request(b, qi, BLK_T_IN, rs, buf))
            return fail("q%u: read of sector %llu failed", qi, (unsigned long long)rs), false;
        for (unsigned i = 0; i < SECTOR; i++)
            if (data[i] != pattern(rs * SECTOR + i, 0))
                return fail("q%u: sector %llu byte %u wrong", qi, (unsigned long long)rs, i), false;
        for (unsigned i = 0; i < SECTOR; i++)
            data[i] = pattern(ws * SECTOR + i, seed);
        if (!blk_request(b, qi, BLK_T_OUT, ws, buf))
            return fail("q%u: write of sector %llu failed", qi, (unsigned long long)ws), false;
        must(virq_disk_read(p->dev, ws * SECTOR, disk, SECTOR), "disk read");
        if (memcmp(disk, data, SECTOR) != 0)
            return fail("q%u: sector %llu not on the disk", qi, (unsigned long long)ws), false;
        printf("[%s] q%u: read sector %llu and wrote sector %llu, data checked, interrupt %s %u\n",
               scenario, qi, (unsigned long long)rs, (unsigned long long)ws,
               b->mode == MODE_INTX ? "INTx, ISR" : "MSI-X vector",
               b->mode == MODE_INTX ? 1 : b->q[qi].vector);
    }
    return true;
}

/* The host changes the configuration: the driver hears it on msix_config or ISR bit 1. */
static bool config_change(struct blk *b) {
    uint8_t gen = rd(b->p, b->common + C_CONFIG_GEN, 1);
    unsigned before = b->p->msi[0];
    must(virq_config_change(b->p->dev), "config change");
    bool heard = b->mode == MODE_INTX ? (intx_handler(b) & 2) : b->p->msi[0] == before + 1;
    uint8_t now = rd(b->p, b->common + C_CONFIG_GEN, 1);
    printf("[%s] config change: %s, config_generation %u -> %u\n", scenario,
           heard ? (b->mode == MODE_INTX ? "ISR bit 1" : "MSI-X vector 0") : "NOT HEARD", gen, now);
    return heard && now != gen;
}

/* A masked entry holds its message in the PBA; unmasking delivers it (PCI 3.0, 6.8.2.9). */
static bool mask_and_pba(struct blk *b) {
    struct platform *p = b->p;
    uint16_t v = b->q[0].vector;
    uint64_t ctl = b->msix_table + 16 * v + 12, pba = b->msix_table + 0x8000;
    unsigned before = p->msi[v];
    wr(p, ctl, 4, 1);
    submit(b, 0, BLK_T_IN, 0, RAM_GPA + 0x90000u);
    bool held = p->msi[v] == before && (rd(p, pba, 8) >> v & 1);
    wr(p, ctl, 4, 0);
    bool delivered = p->msi[v] == before + 1 && !(rd(p, pba, 8) >> v & 1);
    printf("[%s] masked vector %u: message held in the PBA %s, delivered on unmask %s\n",
           scenario, v, held ? "yes" : "NO", delivered ? "yes" : "NO");
    return held && delivered && completed(b, 0);
}

/* Checklist 3.4: a reset returns every selector to NO_VECTOR; re-init re-programs them and
 * reads them back. */
static bool reset_and_reinit(struct blk *b) {
    set_status(b, 0);
    uint16_t config = rd(b->p, b->common + C_MSIX_CONFIG, 2);
    wr(b->p, b->common + C_Q_SELECT, 2, 0);
    uint16_t q0 = rd(b->p, b->common + C_Q_VECTOR, 2);
    printf("[%s] after reset: status %u, msix_config 0x%04x, q0 vector 0x%04x\n", scenario,
           (unsigned)rd(b->p, b->common + C_STATUS, 1), config, q0);
    if (config != NO_VECTOR || q0 != NO_VECTOR)
        return fail("a selector kept its vector across reset"), false;
    if (!bring_up(b))
        return fail("re-init failed"), false;
    printf("[%s] re-initialised: vectors read back config=0x%04x", scenario,
           (unsigned)rd(b->p, b->common + C_MSIX_CONFIG, 2));
    for (uint16_t i = 0; i < b->nq; i++) {
        wr(b->p, b->common + C_Q_SELECT, 2, i);
        printf(" q%u=0x%04x", i, (unsigned)rd(b->p, b->common + C_Q_VECTOR, 2));
    }
    printf("\n");
    return io_round(b, 0x5A);
}

/* ------------------------------------------------------------------ the scenarios */

static uint8_t disk[DISK_SECTORS * SECTOR];
static int failed_scenarios;

/* One device, one driver: the expected interrupt mode after the fallbacks. */
static void run(const char *name, int32_t msix_table, enum mode expect) {
    scenario = name;
    int before = failures;
    struct platform p = {0};
    p.ram = aligned_alloc(4096, RAM_SIZE);
    virq_device_config cfg = virq_device_config_default(VIRQ_DEVICE_TYPE_BLK);
    cfg.num_queues = 2;
    cfg.msix_table_size = msix_table;
    cfg.disk_sectors = DISK_SECTORS;
    cfg.disk_image = disk;
    virq_callbacks cb = {.user = &p, .msi = on_msi, .intx = on_intx};
    must(virq_device_create(&cfg, p.ram, RAM_SIZE, RAM_GPA, &cb, &p.dev), "create");

    place_bars(&p);
    struct blk b = {.p = &p, .nq = 2};
    find_capabilities(&b);
    printf("[%s] virtio-blk %04x:%04x, %u queues, MSI-X table %u, common cfg at 0x%llx\n", name,
           cfg_rd(&p, 0, 2), cfg_rd(&p, 2, 2), (unsigned)rd(&p, b.common + C_NUM_QUEUES, 2),
           b.msix_cap ? b.msix_size : 0, (unsigned long long)b.common);
    bool ok = bring_up(&b);
    printf("[%s] mode: %s\n", name, mode_name[b.mode]);
    if (ok && b.mode != expect)
        ok = false, fail("expected %s", mode_name[expect]);
    ok = ok && io_round(&b, 0xA5) && config_change(&b);
    ok = ok && (b.mode != MODE_PER_QUEUE || mask_and_pba(&b));
    ok = ok && reset_and_reinit(&b);
    if (!ok && failures == before)
        fail("a check above did not hold");
    if (b.mode == MODE_INTX && (cfg_rd(&p, PCI_STATUS, 2) & 8))
        fail("Interrupt Status still set at the end");
    must(virq_device_destroy(p.dev), "destroy");
    free(p.ram);
    printf("[%s] %s\n", name, failures == before ? "PASS" : "FAIL");
    failed_scenarios += failures != before;
}

int main(void) {
    if (virq_abi_version() != VIRQ_ABI_VERSION) {
        printf("libvirq_capi ABI %u, header %u\n", virq_abi_version(), VIRQ_ABI_VERSION);
        return 1;
    }
    for (unsigned i = 0; i < sizeof disk; i++)
        disk[i] = pattern(i, 0);
    run("msix-per-queue", VIRQ_MSIX_DEFAULT, MODE_PER_QUEUE);
    run("msix-shared", 2, MODE_SHARED);          /* 2 entries for config + 2 queues */
    run("msix-table-too-small", 1, MODE_INTX);   /* not even config + one shared vector */
    run("intx", 0, MODE_INTX);                   /* no MSI-X capability at all */
    printf("c-driver: %d passed, %d failed\n", 4 - failed_scenarios, failed_scenarios);
    return failures ? 1 : 0;
}
