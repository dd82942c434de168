"""Cameras: frames in, ``person``, ``camera_tamper`` and ``camera_offline`` events out.

Like the other drivers, cameras know nothing of MQTT, SQLite or the simulator: they report
through the ``emit`` callable they are given and hand snapshots to a sink callable. numpy and
OpenCV (which encodes the snapshots too) are imported only by the modules that need them, and
``picamera2`` only when a Pi camera opens, so a hub without cameras never loads them;
``import sensors.camera`` needs none of them.

Settings are the configuration's own models (``settings.cameras``: frozen pydantic models that
check themselves, raising ``ValueError`` that names the field), read from ``[[cameras]]`` or
built in code with keywords::

    CameraConfig(name, source, kind="auto", zone=name, detect_fps=5.0, width=None, height=None,
                 loop=False, zones=(ZoneConfig, ...), masks=(polygon, ...),
                 labels=("person",), filters=FilterConfig(), motion=MotionConfig(),
                 tamper=TamperConfig(), end_after_s=10.0, offline_after_s=10.0,
                 stall_s=10.0, open_timeout_s=10.0, read_timeout_s=5.0,
                 backoff_min_s=1.0, backoff_max_s=60.0, snapshot_margin=0.3,
                 snapshot_quality=85)
    ZoneConfig(name, polygon=(), armed=("22:00-06:00", ...), inertia=3)
    FilterConfig(min_score=0.5, threshold=0.7, history=10, min_frames=3,
                 min_area=0.0, max_area=1.0, min_ratio=0.0, max_ratio=inf)
    MotionConfig(enabled=True, width=160, threshold=25, contour_area=12, alpha=0.05,
                 lightning=0.8, margin=0.5, min_region=0.5, recheck_s=1.0, max_regions=3)
    TamperConfig(enabled=True, width=160, check_s=0.5, learn_s=2.0, adapt_s=600.0,
                 persist_s=5.0, covered_std=8.0, blur_ratio=0.3, scene_match=0.35, grid=4)

Polygons are tuples of ``(x, y)`` points normalised to the frame (0..1, top left origin).
``source``: ``"picamera"``/``"picamera:1"``, ``"/dev/video0"``/``"usb:0"``,
``"rtsp://user:pass@host/path"`` (any URL FFmpeg opens), a video file, or a folder of pictures.

Running (``sensors.camera.cameras`` / ``sensors.camera.pipeline``)::

    from sensors.camera.cameras import Cameras
    from sensors.camera.snapshots import SnapshotStore

    store = SnapshotStore(data_dir / "snapshots", max_bytes=50_000_000)
    cams = Cameras(settings_list, emit=hub_emit, detector=load_detector(),
                   snapshot=store.put, sources={"cam-1": virtual_camera})
    cams.start()            # one thread per camera; the detector runs one call at a time
    cams.health()           # {"cameras": {name: {...}}, "detector": {...}}
    cams.stop()

    CameraPipeline(settings, emit=..., detector=None, snapshot=None, source=None,
                   clock=time.monotonic, sleep=None, now=datetime.now, clock_synced=None)
        .start() / .stop() / .run() (blocking) / .process(frame) / .health()

* ``emit(Event)`` is called on the camera's thread; it must be quick and thread-safe.
* ``snapshot(event_id, jpeg_bytes)`` is called just before the ``person`` event that refers to
  it (``data.snapshot = "snapshot/<event-id>"``); ``SnapshotStore.put`` fits, and so does a
  function that also publishes the picture.
* ``source`` / ``sources``: any object with ``live``, ``description``, ``open()``, ``read()``
  and ``close()`` (``sensors.camera.sources.FrameSource``), e.g. a simulator's virtual camera.
* ``clock_synced``: where given and false, scheduled zones count as armed (a Pi without a
  real-time clock does not know the hour before NTP).

Events (``source`` is the camera's name; ``data.camera`` too):

* ``person`` E, zone = the zone's name: ``label``, ``score``, ``median_score``, ``box``
  ([x0, y0, x1, y1] pixels), ``frame`` ([w, h]), ``track``, ``people``, ``detector``,
  ``snapshot`` and ``snapshot_box`` (the crop, pixels) when a snapshot was stored.
* ``person`` R, same zone, once the zone has been empty ``end_after_s``: ``incident`` (the E
  event's id), ``duration_s``, ``top_score``, ``detections``, ``people``.
* ``camera_tamper`` E/R (Contact ID 383), zone = the camera's ``zone``: ``reason``
  (``covered``, ``defocused``, ``turned_away``), ``mean``, ``std``, ``sharpness_ratio``,
  ``scene_match``.
* ``camera_offline`` E (Contact ID 380): ``source`` (no password), ``error``; R: ``down_s``.

docs/cameras.md explains the choices and how to tune them.
"""
