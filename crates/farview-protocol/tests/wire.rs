#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Round trips of every message, golden bytes that pin the documented format, and the promise
//! that arbitrary input never panics.

use farview_protocol::*;
use proptest::prelude::*;

fn pose() -> CameraPose {
    CameraPose {
        position: [1.0, 2.0, 3.0],
        rotation: [0.0, 0.0, 0.0, 1.0],
        fov_y: 1.0,
        near: 0.1,
        far: 100.0,
    }
}

fn light() -> Light {
    Light {
        kind: LightKind::Point,
        color: [1.0, 0.5, 0.25],
        intensity: 10.0,
        position: [0.0, 2.0, 0.0],
        direction: [0.0, -1.0, 0.0],
        range: Some(20.0),
    }
}

fn outline() -> OutlineSettings {
    OutlineSettings {
        color: [1.0, 0.5, 0.0],
        width_px: 3.0,
        pulse_period_s: 1.5,
    }
}

fn look_update() -> LookUpdate {
    LookUpdate {
        environment: Some("neutral_sky".into()),
        environment_intensity: Some(1.5),
        show_environment: Some(true),
        background: Some([0.1, 0.2, 0.3]),
        tone_mapping: Some(ToneMapping::AcesFilmic),
        exposure: Some(2.0),
        outline: Some(outline()),
    }
}

fn all_client_messages() -> Vec<ClientMessage> {
    let requests = vec![
        Request::Hello {
            version: PROTOCOL_VERSION,
            client: "test/1".into(),
            session: None,
        },
        Request::Hello {
            version: PROTOCOL_VERSION,
            client: "test/1".into(),
            session: Some(SessionAuth {
                id: "id".into(),
                token: "t".into(),
                resume_secret: Some("r".into()),
            }),
        },
        Request::GetLease,
        Request::SetLease {
            max_lease_ms: 60_000,
        },
        Request::LoadModel {
            path: "BoxTextured/BoxTextured.gltf".into(),
        },
        Request::SetCamera { pose: pose() },
        Request::RequestKeyframe,
        Request::Ping,
        Request::CreateEntity {
            parent: Some(3),
            name: Some("group".into()),
            transform: EntityTransform::at([1.0, 2.0, 3.0]),
        },
        Request::DestroyEntity { entity: 4 },
        Request::Reparent {
            entity: 4,
            parent: None,
            keep_world: true,
        },
        Request::SetTransforms {
            updates: vec![
                TransformUpdate {
                    entity: 4,
                    transform: EntityTransform::IDENTITY,
                };
                3
            ],
        },
        Request::SetVisible {
            entity: 4,
            visible: false,
        },
        Request::SetStateOverride {
            entity: 4,
            state: StateOverride {
                hidden: None,
                see_through: Some(true),
                selected: Some(false),
                tint: Some([1.0, 0.0, 0.0, 0.5]),
                variant: Some(1),
            },
        },
        Request::SetMaterialOverride {
            entity: 4,
            material: MaterialOverride {
                base_color: Some([0.5; 4]),
                metallic: Some(0.0),
                roughness: None,
                emissive: Some([1.0, 1.0, 0.0]),
            },
        },
        Request::AddLight { light: light() },
        Request::UpdateLight {
            id: 0,
            light: Light {
                kind: LightKind::Spot {
                    inner_cone: 0.1,
                    outer_cone: 0.5,
                },
                ..light()
            },
        },
        Request::RemoveLight { id: 1 },
        Request::AddCutPlane {
            plane: CutPlane {
                normal: [1.0, 0.0, 0.0],
                distance: 0.5,
            },
        },
        Request::UpdateCutPlane {
            id: 1,
            plane: CutPlane {
                normal: [0.0, 1.0, 0.0],
                distance: -0.5,
            },
        },
        Request::RemoveCutPlane { id: 1 },
        Request::GetChildren { entity: 1 },
        Request::GetBounds { entity: 1 },
        Request::Raycast {
            ray: RayQuery {
                origin: [0.0; 3],
                direction: [0.0, 0.0, -1.0],
                max_distance: 10.0,
                all: true,
            },
        },
        Request::GetStats,
        Request::LoadUploadedModel {
            upload: 1,
            name: "upload.glb".into(),
        },
        Request::CancelLoad { load_seq: 5 },
        Request::SetLook(look_update()),
        Request::SetLook(LookUpdate::default()),
        Request::GetLook,
        Request::FitView {
            entity: Some(7),
            direction: Some([1.0, 0.5, 0.0]),
        },
        Request::FitView {
            entity: None,
            direction: None,
        },
        Request::ListModels,
    ];
    requests
        .into_iter()
        .enumerate()
        .map(|(i, request)| ClientMessage {
            seq: i as u64 + 1,
            request,
        })
        .collect()
}

fn all_server_messages() -> Vec<ServerMessage> {
    let replies = vec![
        Reply::Welcome(StreamInfo {
            version: 1,
            width: 1280,
            height: 720,
            fps: 60.0,
            codec: "h264".into(),
            host: "farview-host 0.1.0".into(),
            adapter: "llvmpipe".into(),
            session_id: Some("0d5e".into()),
            resume_secret: Some("secret".into()),
            lease: Some(LeaseInfo {
                max_lease_ms: 3,
                elapsed_ms: 1,
                remaining_ms: 2,
            }),
        }),
        Reply::Lease(LeaseInfo {
            max_lease_ms: 3,
            elapsed_ms: 1,
            remaining_ms: 2,
        }),
        Reply::ModelLoaded(LoadedModel {
            root_entity: 7,
            bounds_min: [-1.0; 3],
            bounds_max: [1.0; 3],
            triangles: 12,
            vertices: 24,
            textures: 1,
            entities: 3,
            ignored_extensions: vec!["KHR_materials_sheen".into()],
            load_time_us: 1234,
            hierarchy: vec![EntityNode {
                entity: 7,
                parent: None,
                name: Some("root".into()),
                has_mesh: false,
            }],
            shared_assets: false,
            animations: vec!["Run".into()],
            skins: 1,
            morph_targets: 2,
            cameras: 1,
            lights: 0,
            warnings: vec!["1 line primitive not drawn".into()],
            variants: vec!["red".into(), "blue".into()],
            camera_list: vec![ModelCamera {
                name: Some("front".into()),
                entity: 8,
                yfov: 0.7,
                znear: 0.1,
                zfar: None,
                aspect_ratio: Some(1.5),
            }],
        }),
        Reply::Animations(vec![AnimationInfo {
            name: "Walk".into(),
            duration_s: 0.7,
        }]),
        Reply::AnimationState(AnimationState {
            index: Some(1),
            time_s: 0.25,
            speed: -1.0,
            playing: true,
            looping: false,
        }),
        Reply::EntityCreated { entity: 9 },
        Reply::Destroyed { entities: 3 },
        Reply::Applied,
        Reply::LightAdded { id: 2 },
        Reply::CutPlaneAdded { id: 1 },
        Reply::Children {
            children: vec![EntityNode {
                entity: 8,
                parent: Some(7),
                name: None,
                has_mesh: true,
            }],
            truncated: false,
        },
        Reply::Bounds(EntityBounds {
            local: Some(([-1.0; 3], [1.0; 3])),
            world: None,
        }),
        Reply::Hits(vec![RayHit {
            entity: 8,
            position: [0.0, 0.0, 1.0],
            normal: [0.0, 0.0, 1.0],
            distance: 4.0,
        }]),
        Reply::Stats(SceneStats {
            entities: 3,
            triangles: 12,
            models: 1,
            lights: 1,
            cut_planes: 0,
            gpu_bytes: 1 << 20,
        }),
        Reply::LoadCancelled,
        Reply::CameraSet,
        Reply::KeyframeScheduled,
        Reply::Pong { host_time_us: 42 },
        Reply::Look(LookState {
            environment: NO_ENVIRONMENT.into(),
            environment_intensity: 1.0,
            show_environment: false,
            background: [0.0331; 3],
            tone_mapping: ToneMapping::None,
            exposure: 1.0,
            outline: outline(),
        }),
        Reply::CameraFitted(pose()),
        Reply::Models {
            models: vec![ModelFile {
                path: "Fox/Fox.glb".into(),
                bytes: 162_852,
            }],
            truncated: false,
        },
    ];
    let mut out: Vec<ServerMessage> = replies
        .into_iter()
        .enumerate()
        .map(|(i, r)| ServerMessage::Reply {
            seq: i as u64,
            result: Ok(r),
        })
        .collect();
    for &code in ErrorCode::ALL {
        out.push(ServerMessage::Reply {
            seq: 9,
            result: Err(WireError::new(code, "why")),
        });
    }
    out.push(ServerMessage::Event(Event::LoadProgress {
        seq: 3,
        percent: 40,
    }));
    out.push(ServerMessage::Event(Event::Closing(WireError::new(
        ErrorCode::SHUTTING_DOWN,
        "bye",
    ))));
    out
}

#[test]
fn every_message_round_trips_through_framing() {
    let mut dec = FrameDecoder::new(MAX_CONTROL_MESSAGE);
    for msg in all_client_messages() {
        let bytes = encode_message(&msg).unwrap();
        // Feed one byte at a time: framing must not care how bytes arrive.
        for b in &bytes {
            dec.push(std::slice::from_ref(b)).unwrap();
        }
        let payload = dec.next_frame().unwrap().unwrap();
        assert_eq!(decode_message::<ClientMessage>(&payload).unwrap(), msg);
    }
    for msg in all_server_messages() {
        let bytes = encode_message(&msg).unwrap();
        dec.push(&bytes).unwrap();
        let payload = dec.next_frame().unwrap().unwrap();
        assert_eq!(decode_message::<ServerMessage>(&payload).unwrap(), msg);
    }
    assert_eq!(dec.buffered(), 0);
    dec.finish().unwrap();
}

#[test]
fn golden_bytes_match_the_documented_format() {
    // docs/protocol.md, "Control messages": seq varint, variant index varint, fields.
    let ping = encode_message(&ClientMessage {
        seq: 300,
        request: Request::Ping,
    })
    .unwrap();
    assert_eq!(ping, [0, 0, 0, 3, 0xAC, 0x02, 4]);
    let load = encode_message(&ClientMessage {
        seq: 1,
        request: Request::LoadModel {
            path: "a.glb".into(),
        },
    })
    .unwrap();
    assert_eq!(load, [0, 0, 0, 8, 1, 1, 5, b'a', b'.', b'g', b'l', b'b']);
    let err = encode_message(&ServerMessage::Reply {
        seq: 2,
        result: Err(WireError::new(ErrorCode::MODEL_NOT_FOUND, "x")),
    })
    .unwrap();
    // Reply=0, seq=2, Err=1, code 200 as varint (0xC8 0x01), message "x".
    assert_eq!(err, [0, 0, 0, 7, 0, 2, 1, 0xC8, 0x01, 1, b'x']);
    // Version 3's requests are appended: SetLook = 26, GetLook = 27, FitView = 28.
    let look = encode_message(&ClientMessage {
        seq: 5,
        request: Request::SetLook(LookUpdate {
            exposure: Some(2.0),
            ..LookUpdate::default()
        }),
    })
    .unwrap();
    // seq, 26, environment None, intensity None, show None, background None, tone mapping None,
    // exposure Some(2.0 as f32 LE), outline None.
    assert_eq!(
        look,
        [0, 0, 0, 13, 5, 26, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0x40, 0]
    );
    let fit = encode_message(&ClientMessage {
        seq: 6,
        request: Request::FitView {
            entity: Some(3),
            direction: None,
        },
    })
    .unwrap();
    assert_eq!(fit, [0, 0, 0, 5, 6, 28, 1, 3, 0]);
    // Version 4 appended ListModels = 29.
    let list = encode_message(&ClientMessage {
        seq: 7,
        request: Request::ListModels,
    })
    .unwrap();
    assert_eq!(list, [0, 0, 0, 2, 7, 29]);

    // Version 5 appended ListAnimations = 30, Animate = 31, ViewCamera = 32.
    let animate = encode_message(&ClientMessage {
        seq: 8,
        request: Request::Animate {
            root: 3,
            command: AnimationCommand::Seek { time_s: 1.0 },
        },
    })
    .unwrap();
    assert_eq!(&animate[4..8], &[8, 31, 3, 3]);

    let h = FrameHeader {
        frame_number: 1,
        group: 2,
        last_command_seq: 3,
        render_start_us: 4,
        render_end_us: 5,
        encode_end_us: 6,
        send_us: 7,
        width: 1280,
        height: 720,
        keyframe: true,
        animation: Some(FrameAnimation {
            root: 9,
            time_us: 1_500_000,
        }),
        detail: Some(FrameDetail {
            lod_error_millipx: 1500,
            triangles: 123_456,
        }),
    };
    let prefix = h.record_prefix(10).unwrap();
    // 88-byte headers: the version-1 fields, the animation shown (version 5), the detail
    // (version 6).
    assert_eq!(&prefix[..6], &[0, 0, 0, 100, 0, 88]);
    assert_eq!(&prefix[6..14], &1u64.to_be_bytes());
    assert_eq!(&prefix[62..67], &[0x05, 0x00, 0x02, 0xD0, 1]);
    assert_eq!(&prefix[70..78], &9u64.to_be_bytes());
    assert_eq!(&prefix[78..86], &1_500_000u64.to_be_bytes());
    assert_eq!(&prefix[86..90], &1500u32.to_be_bytes());
    assert_eq!(&prefix[90..94], &123_456u32.to_be_bytes());
    // A version-1 reader's 64 bytes still decode, with no animation; a version-5 reader's 80
    // with no detail.
    let old = FrameHeader::decode(&prefix[6..70]).unwrap();
    assert_eq!(old.animation, None);
    assert_eq!(old.frame_number, 1);
    let v5 = FrameHeader::decode(&prefix[6..86]).unwrap();
    assert_eq!(v5.animation, h.animation);
    assert_eq!(v5.detail, None);
    assert_eq!(FrameHeader::decode(&prefix[6..]).unwrap(), h);
    assert_eq!(
        MediaStreamHeader {
            version: 1,
            group: 5
        }
        .encode(),
        *b"FVMS\x00\x01\x00\x00\x00\x00\x00\x00\x00\x05"
    );
}

#[test]
fn frame_records_round_trip_and_tolerate_longer_headers() {
    let rec = FrameRecord {
        header: FrameHeader {
            frame_number: 9,
            keyframe: true,
            width: 64,
            height: 32,
            ..Default::default()
        },
        payload: vec![0, 0, 0, 1, 0x65, 1, 2, 3],
    };
    let bytes = rec.encode().unwrap();
    let len = u32::from_be_bytes(bytes[..4].try_into().unwrap());
    assert_eq!(FrameRecord::check_len(len).unwrap(), bytes.len() - 4);
    assert_eq!(FrameRecord::decode(&bytes[4..]).unwrap(), rec);

    // A newer host sends a longer header (16 bytes more): this reader still finds the payload.
    let mut body = vec![0, (FrameHeader::LEN + 16) as u8];
    body.extend_from_slice(&rec.header.encode());
    body.extend_from_slice(&[0xEE; 16]);
    body.extend_from_slice(&rec.payload);
    assert_eq!(FrameRecord::decode(&body).unwrap(), rec);

    assert!(FrameRecord::check_len(u32::MAX).is_err());
    assert!(FrameRecord::check_len(3).is_err());
    assert!(MediaStreamHeader::decode(b"XXXX\x00\x01\x00\x00\x00\x00\x00\x00\x00\x05").is_err());
}

#[test]
fn oversized_frames_are_refused_before_buffering() {
    let mut dec = FrameDecoder::new(1024);
    let err = dec.push(&[0x7F, 0xFF, 0xFF, 0xFF]).unwrap_err();
    assert!(
        matches!(
            err,
            ProtocolError::TooLarge {
                len: 0x7FFF_FFFF,
                max: 1024
            }
        ),
        "{err:?}"
    );
}

#[test]
fn truncated_stream_is_reported_at_finish() {
    let mut dec = FrameDecoder::new(1024);
    dec.push(&[0, 0, 0, 10, 1, 2]).unwrap();
    assert_eq!(dec.next_frame().unwrap(), None);
    assert_eq!(dec.finish(), Err(ProtocolError::Truncated(8)));
}

#[test]
fn error_codes_have_unique_stable_names() {
    let mut names: Vec<_> = ErrorCode::ALL.iter().map(|c| c.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), ErrorCode::ALL.len());
    assert_eq!(ErrorCode(9999).name(), "unknown");
    assert_eq!(
        ErrorCode::MODEL_PATH_FORBIDDEN.to_string(),
        "model_path_forbidden (201)"
    );
}

#[test]
fn look_updates_are_checked_against_their_bounds() {
    assert!(look_update().validate().is_ok());
    assert!(LookUpdate::default().validate().is_ok());
    let bad = [
        LookUpdate {
            exposure: Some(f32::NAN),
            ..LookUpdate::default()
        },
        LookUpdate {
            exposure: Some(0.0),
            ..LookUpdate::default()
        },
        LookUpdate {
            exposure: Some(MAX_EXPOSURE * 2.0),
            ..LookUpdate::default()
        },
        LookUpdate {
            background: Some([2.0, 0.0, 0.0]),
            ..LookUpdate::default()
        },
        LookUpdate {
            environment_intensity: Some(-1.0),
            ..LookUpdate::default()
        },
        LookUpdate {
            outline: Some(OutlineSettings {
                width_px: 100.0,
                ..outline()
            }),
            ..LookUpdate::default()
        },
        LookUpdate {
            outline: Some(OutlineSettings {
                pulse_period_s: f32::INFINITY,
                ..outline()
            }),
            ..LookUpdate::default()
        },
        LookUpdate {
            environment: Some("../etc/passwd".into()),
            ..LookUpdate::default()
        },
        LookUpdate {
            environment: Some(String::new()),
            ..LookUpdate::default()
        },
        LookUpdate {
            environment: Some("x".repeat(MAX_ENVIRONMENT_NAME + 1)),
            ..LookUpdate::default()
        },
    ];
    for u in bad {
        assert!(u.validate().is_err(), "{u:?} passed");
    }
    assert!(is_environment_name(NO_ENVIRONMENT));
    assert!(is_environment_name("studio_2-k"));
    assert!(!is_environment_name("a/b") && !is_environment_name("a.hdr"));
}

#[test]
fn camera_pose_validation_rejects_nonsense() {
    assert!(pose().validate().is_ok());
    assert!(
        CameraPose {
            fov_y: f32::NAN,
            ..pose()
        }
        .validate()
        .is_err()
    );
    assert!(
        CameraPose {
            near: 0.0,
            ..pose()
        }
        .validate()
        .is_err()
    );
    assert!(
        CameraPose {
            rotation: [0.0; 4],
            ..pose()
        }
        .validate()
        .is_err()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_message::<ClientMessage>(&bytes);
        let _ = decode_message::<ServerMessage>(&bytes);
        let _ = FrameRecord::decode(&bytes);
        let _ = FrameHeader::decode(&bytes);
        let _ = MediaStreamHeader::decode(&bytes);
        let mut dec = FrameDecoder::new(256);
        if dec.push(&bytes).is_ok() {
            while let Ok(Some(p)) = dec.next_frame() {
                let _ = decode_message::<ClientMessage>(&p);
            }
        }
    }

    #[test]
    fn arbitrary_load_paths_round_trip(path in ".{0,200}", seq in any::<u64>()) {
        let msg = ClientMessage { seq, request: Request::LoadModel { path } };
        let bytes = encode_message(&msg).unwrap();
        prop_assert_eq!(decode_message::<ClientMessage>(&bytes[4..]).unwrap(), msg);
    }
}

/// The JSON codec (browsers over WebTransport) pins the shapes the viewer page writes and reads
/// (crates/farview-host/viewer/): serde's externally tagged enums with the Rust field names.
#[test]
fn json_codec_pins_the_shapes_the_viewer_uses() {
    let codec = ControlCodec::Json;
    let decode_client = |json: &str| -> ClientMessage { codec.decode(json.as_bytes()).unwrap() };
    assert_eq!(
        decode_client(
            r#"{"seq":1,"request":{"Hello":{"version":3,"client":"v","session":{"id":"i","token":"t","resume_secret":null}}}}"#
        ),
        ClientMessage {
            seq: 1,
            request: Request::Hello {
                version: 3,
                client: "v".into(),
                session: Some(SessionAuth {
                    id: "i".into(),
                    token: "t".into(),
                    resume_secret: None,
                }),
            },
        }
    );
    assert_eq!(
        decode_client(r#"{"seq":2,"request":"RequestKeyframe"}"#).request,
        Request::RequestKeyframe
    );
    assert_eq!(
        decode_client(
            r#"{"seq":3,"request":{"SetCamera":{"pose":{"position":[1,2,3],"rotation":[0,0,0,1],"fov_y":1,"near":0.1,"far":100}}}}"#
        )
        .request,
        Request::SetCamera { pose: pose() }
    );

    // Length-delimited like postcard frames, and round trips.
    let reply = ServerMessage::Reply {
        seq: 7,
        result: Ok(Reply::CameraSet),
    };
    let mut framed = Vec::new();
    codec.encode_into(&reply, &mut framed).unwrap();
    let len = u32::from_be_bytes(framed[..4].try_into().unwrap()) as usize;
    assert_eq!(len, framed.len() - 4);
    assert_eq!(
        std::str::from_utf8(&framed[4..]).unwrap(),
        r#"{"Reply":{"seq":7,"result":{"Ok":"CameraSet"}}}"#
    );
    let back: ServerMessage = codec.decode(&framed[4..]).unwrap();
    assert_eq!(back, reply);
    let refused = ServerMessage::Reply {
        seq: 8,
        result: Err(WireError::new(ErrorCode::INVALID_ARGUMENT, "no")),
    };
    let json = serde_json::to_string(&refused).unwrap();
    assert!(json.contains(r#""Err":{"code":"#), "{json}");

    // Garbage is a typed error, never a panic.
    assert!(matches!(
        codec.decode::<ClientMessage>(b"{\"seq\":"),
        Err(ProtocolError::Malformed(_))
    ));
    assert!(matches!(
        codec.decode::<ClientMessage>(&[0xff, 0xfe]),
        Err(ProtocolError::Malformed(_))
    ));
}
