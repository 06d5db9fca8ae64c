"""How big a camera frame survives DDS between two processes, per QoS, and what is lost.

A publisher process sends ``--count`` sensor_msgs/Image frames of each size; this process
subscribes and counts what arrives and what the middleware reports as lost (the
``message_lost`` QoS event the node's diagnostics count too). Uses the Fast DDS profile in
FASTDDS_DEFAULT_PROFILES_FILE (config/fastdds_camera_profile.xml unless set).

    python scripts/transport_probe.py --qos sensor_data --count 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

SIZES = {  # name: (width, height, encoding, bytes per pixel)
    "640x480 rgb8": (640, 480, "rgb8", 3),
    "1280x1024 mono16": (1280, 1024, "mono16", 2),
    "1920x1080 rgb8": (1920, 1080, "rgb8", 3),
    "3840x2160 rgb8": (3840, 2160, "rgb8", 3),
    "4000x3000 rgb8": (4000, 3000, "rgb8", 3),
}
PROFILE = Path(__file__).resolve().parent.parent / "config" / "fastdds_camera_profile.xml"


def qos_profile(name: str):
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    if name == "sensor_data":
        return qos_profile_sensor_data
    return QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def publish(args: argparse.Namespace) -> int:
    """Child process: wait for the subscriber, send every size, one topic per size."""
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("transport_probe_pub")
    for k, name in enumerate(args.sizes):
        w, h, enc, bpp = SIZES[name]
        pub = node.create_publisher(Image, f"probe/s{k}", qos_profile(args.qos))
        deadline = time.monotonic() + 30
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        msg = Image(width=w, height=h, encoding=enc, step=w * bpp)
        msg.data = bytes(w * h * bpp)
        for i in range(args.count):
            msg.header.stamp.sec = i
            pub.publish(msg)
            time.sleep(args.period)
        if args.qos == "reliable":
            from rclpy.duration import Duration

            pub.wait_for_all_acked(Duration(seconds=30))
        time.sleep(0.5)
    node.destroy_node()
    rclpy.shutdown()
    return 0


def measure(args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.event_handler import SubscriptionEventCallbacks
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(PROFILE))
    rclpy.init()
    node = rclpy.create_node("transport_probe_sub")
    got = {name: 0 for name in args.sizes}
    lost = {name: 0 for name in args.sizes}
    lock = threading.Lock()
    for k, name in enumerate(args.sizes):

        def on_msg(_msg, name=name) -> None:
            with lock:
                got[name] += 1

        def on_lost(info, name=name) -> None:
            with lock:
                lost[name] += info.total_count_change

        node.create_subscription(
            Image,
            f"probe/s{k}",
            on_msg,
            qos_profile(args.qos),
            event_callbacks=SubscriptionEventCallbacks(message_lost=on_lost),
        )
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    child = subprocess.Popen(
        [sys.executable, __file__, "--role", "pub", *sys.argv[1:]], env=dict(os.environ)
    )
    child.wait(600)
    time.sleep(1.0)  # the last frames' callbacks
    result = {
        "qos": args.qos,
        "profile": os.environ["FASTDDS_DEFAULT_PROFILES_FILE"],
        "sent_per_size": args.count,
        "sizes": {
            n: {
                "MB": round(SIZES[n][0] * SIZES[n][1] * SIZES[n][3] / 1e6, 1),
                "received": got[n],
                "message_lost": lost[n],
            }
            for n in args.sizes
        },
    }
    print(json.dumps(result, indent=1))
    executor.shutdown()
    spin.join(5)
    node.destroy_node()
    rclpy.shutdown()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qos", choices=("sensor_data", "reliable"), default="sensor_data")
    parser.add_argument("--count", type=int, default=20, help="frames per size")
    parser.add_argument("--period", type=float, default=0.1, help="seconds between frames")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--role", choices=("sub", "pub"), default="sub")
    args = parser.parse_args()
    return publish(args) if args.role == "pub" else measure(args)


if __name__ == "__main__":
    sys.exit(main())
