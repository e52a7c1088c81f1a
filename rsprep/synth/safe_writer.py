"""Write synthetic Sentinel-2 SAFE products that GDAL's SENTINEL2 driver and our reader open."""

from __future__ import annotations

import hashlib
import os
import zipfile
from datetime import datetime
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from rsprep.core.bands import BANDS_BY_NAME, L1C_BANDS, SPECTRAL_BANDS
from rsprep.synth.layout import EPSG, RELATIVE_ORBIT, ProductSpec
from rsprep.synth.render import QUANTIFICATION, Rendered

_NS = {
    "L2A": ("Level-2A_User_Product", "https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd"),
    "L1C": ("Level-1C_User_Product", "https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-1C.xsd"),
}
_NS_TL = {
    "L2A": ("Level-2A_Tile_ID", "https://psd-14.sentinel2.eo.esa.int/PSD/S2_PDI_Level-2A_Tile_Metadata.xsd"),
    "L1C": ("Level-1C_Tile_ID", "https://psd-14.sentinel2.eo.esa.int/PSD/S2_PDI_Level-1C_Tile_Metadata.xsd"),
}
_SCL_NAMES = (
    "SC_NODATA",
    "SC_SATURATED_DEFECTIVE",
    "SC_DARK_FEATURE_SHADOW",
    "SC_CLOUD_SHADOW",
    "SC_VEGETATION",
    "SC_NOT_VEGETATED",
    "SC_WATER",
    "SC_UNCLASSIFIED",
    "SC_CLOUD_MEDIUM_PROBA",
    "SC_CLOUD_HIGH_PROBA",
    "SC_THIN_CIRRUS",
    "SC_SNOW_ICE",
)
_QUALITY_CHECKS = {
    "L2A": (
        "FORMAT_CORRECTNESS",
        "GENERAL_QUALITY",
        "GEOMETRIC_QUALITY",
        "L2A_QUALITY",
        "RADIOMETRIC_QUALITY",
        "SENSOR_QUALITY",
    ),
    "L1C": (
        "FORMAT_CORRECTNESS",
        "GENERAL_QUALITY",
        "GEOMETRIC_QUALITY",
        "RADIOMETRIC_QUALITY",
        "SENSOR_QUALITY",
    ),
}
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _t(when: datetime, micro: bool = False) -> str:
    return (
        when.strftime("%Y-%m-%dT%H:%M:%S.%f" if micro else "%Y-%m-%dT%H:%M:%S.000")[: 26 if micro else 23]
        + "Z"
    )


def band_relpaths(spec: ProductSpec) -> dict[str, str]:
    """Layer key → file path (relative to the SAFE root, without .jp2), in IMAGE_FILE order.

    Keys are band names (``B02``) at their native resolution, and ``<layer>_<res>`` for the other
    layers real products ship (``TCI_10``, ``AOT_20``, ``WVP_60``, ``SCL_20``, ...).
    """
    dt = f"{spec.acquisition.datatake:%Y%m%dT%H%M%S}"
    base = f"GRANULE/{spec.granule_dir}/IMG_DATA"
    out: dict[str, str] = {}
    if spec.level == "L1C":
        for b in L1C_BANDS:
            out[b] = f"{base}/{spec.tile.name}_{dt}_{b}"
        out["TCI_10"] = f"{base}/{spec.tile.name}_{dt}_TCI"
        return out
    for res in (10, 20, 60):
        for b in SPECTRAL_BANDS:
            if BANDS_BY_NAME[b].resolution == res:
                out[b] = f"{base}/R{res}m/{spec.tile.name}_{dt}_{b}_{res}m"
        for layer in ("TCI", "AOT", "WVP") + (("SCL",) if res != 10 else ()):
            out[f"{layer}_{res}"] = f"{base}/R{res}m/{spec.tile.name}_{dt}_{layer}_{res}m"
    return out


def qi_relpaths(spec: ProductSpec) -> dict[str, str]:
    """Cloud and snow probability masks of L2A products (GDAL's CLD and SNW bands)."""
    if spec.level != "L2A":
        return {}
    q = f"GRANULE/{spec.granule_dir}/QI_DATA"
    return {f"{m}_{r}": f"{q}/MSK_{m}PRB_{r}m" for m in ("CLD", "SNW") for r in (20, 60)}


def _downsample(a: np.ndarray, f: int) -> np.ndarray:
    """Block mean by ``f`` (nodata 0 wherever a block touches nodata), as a resampled band."""
    if f == 1:
        return a
    h, w = a.shape[0] // f, a.shape[1] // f
    blocks = a[: h * f, : w * f].reshape(h, f, w, f)
    out = blocks.mean(axis=(1, 3), dtype=np.float64).round().astype(a.dtype)
    out[(blocks == 0).any(axis=(1, 3))] = 0
    return out


def _layer(key: str, spec: ProductSpec, rendered: Rendered) -> tuple[np.ndarray, int]:
    """The array and resolution of one non-spectral layer."""
    name, res = key.split("_")
    res = int(res)
    if name == "SCL":
        return rendered.scl[res], res
    if name in ("CLD", "SNW"):
        scl = rendered.scl[res]
        prob = np.zeros(scl.shape, dtype=np.uint8)
        if name == "CLD":
            prob[scl == 10], prob[scl == 8], prob[scl == 9] = 30, 65, 95
        else:
            prob[scl == 11] = 90
        return prob, res
    b02 = rendered.bands["B02"]
    if name in ("AOT", "WVP"):
        value = 112 if name == "AOT" else 1210  # quantified 0.112 and 1.21 cm, flat like a clear scene
        arr = np.full((b02.shape[0] * 10 // res, b02.shape[1] * 10 // res), value, dtype=np.uint16)
        arr[_downsample(b02, res // 10) == 0] = 0
        return arr, res
    # TCI: B04, B03, B02 reflectance 0 ... 0.2 stretched to 1 ... 255, 0 for nodata
    add = 1000 if spec.has_offset else 0
    rgb = []
    for b in ("B04", "B03", "B02"):
        dn = _downsample(rendered.bands[b], res // 10)
        refl = (dn.astype(np.float32) - add) / QUANTIFICATION
        v = np.clip(np.rint(refl / 0.2 * 254 + 1), 1, 255).astype(np.uint8)
        v[dn == 0] = 0
        rgb.append(v)
    return np.stack(rgb), res


def write_product(
    spec: ProductSpec, rendered: Rendered, out_dir: Path, *, content: str, footprint: str
) -> Path:
    """Write the SAFE folder of ``spec`` into ``out_dir`` and return its path."""
    root = out_dir / spec.product_uri
    gran = root / "GRANULE" / spec.granule_dir
    rel = band_relpaths(spec)
    for r in set(os.path.dirname(p) for p in rel.values()):
        (root / r).mkdir(parents=True, exist_ok=True)
    if spec.level == "L2A":
        # L1C downloads often lack these empty folders (sen2cor needs them); ours mimic that.
        (gran / "QI_DATA").mkdir(parents=True, exist_ok=True)
        (gran / "AUX_DATA").mkdir(parents=True, exist_ok=True)
        (root / "DATASTRIP" / _datastrip_dir(spec) / "QI_DATA").mkdir(parents=True, exist_ok=True)

    tile = spec.tile
    for key, path in {**rel, **qi_relpaths(spec)}.items():
        if key in BANDS_BY_NAME:
            arr, res = rendered.bands[key], BANDS_BY_NAME[key].resolution
        else:
            arr, res = _layer(key, spec, rendered)
        write_raster(root / f"{path}.jp2", arr, ulx=tile.ulx, uly=tile.uly, res=res, content=content)

    (gran / "MTD_TL.xml").write_text(_tile_xml(spec, rendered), encoding="utf-8")
    mtd = "MTD_MSIL2A.xml" if spec.level == "L2A" else "MTD_MSIL1C.xml"
    (root / mtd).write_text(_product_xml(spec, rendered, list(rel.values()), footprint), encoding="utf-8")
    (root / "manifest.safe").write_text(_manifest(root), encoding="utf-8")
    return root


def write_raster(path: Path, arr: np.ndarray, *, ulx: float, uly: float, res: float, content: str) -> None:
    """One band file: lossless JPEG2000 (as ESA ships them) or, for speed, GeoTIFF content."""
    import rasterio
    from rasterio.transform import from_origin

    arr = arr if arr.ndim == 3 else arr[None]
    profile = dict(
        width=arr.shape[2],
        height=arr.shape[1],
        count=arr.shape[0],
        dtype=arr.dtype.name,
        crs=f"EPSG:{EPSG}",
        transform=from_origin(ulx, uly, res, res),
    )
    block = 1024 if min(arr.shape[1:]) >= 1024 else None
    if content == "jp2":
        opts = dict(driver="JP2OpenJPEG", REVERSIBLE="YES", QUALITY="100", YCC="NO")
        if block:
            opts.update(BLOCKXSIZE=block, BLOCKYSIZE=block)
    else:
        opts = dict(
            driver="GTiff",
            COMPRESS="DEFLATE",
            ZLEVEL=1,
            PREDICTOR=2,
            TILED="YES",
            BLOCKXSIZE=512,
            BLOCKYSIZE=512,
        )
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(path, "w", **profile, **opts) as ds:
        ds.write(arr)


def _datastrip_dir(spec: ProductSpec) -> str:
    return f"DS_SYNT_{spec.generation:%Y%m%dT%H%M%S}_S{spec.acquisition.datatake:%Y%m%dT%H%M%S}"


def _ids(spec: ProductSpec) -> tuple[str, str]:
    a, b = spec.acquisition, spec.baseline
    gen = f"{spec.generation:%Y%m%dT%H%M%S}"
    ds = f"{a.mission}_OPER_MSI_{spec.level}_DS_SYNT_{gen}_S{a.datatake:%Y%m%dT%H%M%S}_N{b}"
    tl = f"{a.mission}_OPER_MSI_{spec.level}_TL_SYNT_{gen}_A{spec.absolute_orbit:06d}_{spec.tile.name}_N{b}"
    return ds, tl


def _quality_block(spec: ProductSpec) -> str:
    checks = "\n".join(
        f'                <quality_check checkType="{c}">{"FAILED" if c == spec.failed_check else "PASSED"}</quality_check>'
        for c in _QUALITY_CHECKS[spec.level]
    )
    failed = (
        f"<Failed_Inspections><check_name>{spec.failed_check}</check_name></Failed_Inspections>"
        if spec.failed_check
        else "<Failed_Inspections/>"
    )
    return f"""        <Quality_Control_Checks>
            <Quality_Inspections>
{checks}
            </Quality_Inspections>
            {failed}
        </Quality_Control_Checks>"""


def _content_qi(rendered: Rendered, indent: str) -> str:
    p = rendered.scl_percent
    cloudy = p.get(8, 0.0) + p.get(9, 0.0) + p.get(10, 0.0)
    items = [
        ("CLOUDY_PIXEL_OVER_LAND_PERCENTAGE", cloudy),
        ("NODATA_PIXEL_PERCENTAGE", p.get(0, 0.0)),
        ("SATURATED_DEFECTIVE_PIXEL_PERCENTAGE", 0.0),
        ("CLOUD_SHADOW_PERCENTAGE", p.get(3, 0.0)),
        ("MEDIUM_PROBA_CLOUDS_PERCENTAGE", p.get(8, 0.0)),
        ("HIGH_PROBA_CLOUDS_PERCENTAGE", p.get(9, 0.0)),
        ("THIN_CIRRUS_PERCENTAGE", p.get(10, 0.0)),
        ("SNOW_ICE_PERCENTAGE", p.get(11, 0.0)),
    ]
    return "\n".join(f"{indent}<{k}>{v:.6f}</{k}>" for k, v in items)


def _product_xml(spec: ProductSpec, rendered: Rendered, image_files: list[str], footprint: str) -> str:
    a, level = spec.acquisition, spec.level
    tag, ns = _NS[level]
    ds_id, tl_id = _ids(spec)
    files = "\n".join(f"                        <IMAGE_FILE>{escape(f)}</IMAGE_FILE>" for f in image_files)
    band_ids = range(13)
    spectral = "\n".join(
        f'        <Spectral_Information bandId="{i}" physicalBand="{b.physical}">\n'
        f"          <RESOLUTION>{b.resolution}</RESOLUTION>\n"
        f'          <Wavelength><CENTRAL unit="nm">{b.central_wavelength_nm}</CENTRAL></Wavelength>\n'
        f"        </Spectral_Information>"
        for i in band_ids
        for b in [next(x for x in BANDS_BY_NAME.values() if x.band_id == i)]
    )
    if level == "L2A":
        quant = f"""            <QUANTIFICATION_VALUES_LIST>
                <BOA_QUANTIFICATION_VALUE unit="none">{QUANTIFICATION}</BOA_QUANTIFICATION_VALUE>
                <AOT_QUANTIFICATION_VALUE unit="none">1000.0</AOT_QUANTIFICATION_VALUE>
                <WVP_QUANTIFICATION_VALUE unit="cm">1000.0</WVP_QUANTIFICATION_VALUE>
            </QUANTIFICATION_VALUES_LIST>"""
        offset_tag, offset_list = "BOA_ADD_OFFSET", "BOA_ADD_OFFSET_VALUES_LIST"
        scl = "\n".join(
            f"                <Scene_Classification_ID>\n"
            f"                    <SCENE_CLASSIFICATION_TEXT>{n}</SCENE_CLASSIFICATION_TEXT>\n"
            f"                    <SCENE_CLASSIFICATION_INDEX>{i}</SCENE_CLASSIFICATION_INDEX>\n"
            f"                </Scene_Classification_ID>"
            for i, n in enumerate(_SCL_NAMES)
        )
        scl = f"            <Scene_Classification_List>\n{scl}\n            </Scene_Classification_List>"
        ptype, plevel = "S2MSI2A", "Level-2A"
    else:
        quant = f'            <QUANTIFICATION_VALUE unit="none">{QUANTIFICATION}</QUANTIFICATION_VALUE>'
        offset_tag, offset_list = "RADIO_ADD_OFFSET", "Radiometric_Offset_List"
        scl = ""
        ptype, plevel = "S2MSI1C", "Level-1C"
    offsets = ""
    if spec.has_offset:
        inner = "\n".join(f'        <{offset_tag} band_id="{i}">-1000</{offset_tag}>' for i in band_ids)
        offsets = f"            <{offset_list}>\n{inner}\n      </{offset_list}>"
    p = rendered.scl_percent
    cloud_cover = p.get(8, 0.0) + p.get(9, 0.0) + p.get(10, 0.0)
    content_qi = _content_qi(rendered, "            ") if level == "L2A" else ""
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<n1:{tag} xmlns:n1="{ns}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="{ns}">
    <n1:General_Info>
        <Product_Info>
            <PRODUCT_START_TIME>{_t(a.datatake)}</PRODUCT_START_TIME>
            <PRODUCT_STOP_TIME>{_t(a.datatake)}</PRODUCT_STOP_TIME>
            <PRODUCT_URI>{spec.product_uri}</PRODUCT_URI>
            <PROCESSING_LEVEL>{plevel}</PROCESSING_LEVEL>
            <PRODUCT_TYPE>{ptype}</PRODUCT_TYPE>
            <PROCESSING_BASELINE>{spec.baseline}</PROCESSING_BASELINE>
            <GENERATION_TIME>{_t(spec.generation, micro=True)}</GENERATION_TIME>
            <PREVIEW_IMAGE_URL>Not applicable</PREVIEW_IMAGE_URL>
            <PREVIEW_GEO_INFO>Not applicable</PREVIEW_GEO_INFO>
            <Datatake datatakeIdentifier="G{a.mission}_{a.datatake:%Y%m%dT%H%M%S}_{spec.absolute_orbit:06d}_N{spec.baseline}">
                <SPACECRAFT_NAME>Sentinel-{a.mission[-2:]}</SPACECRAFT_NAME>
                <DATATAKE_TYPE>INS-NOBS</DATATAKE_TYPE>
                <DATATAKE_SENSING_START>{_t(a.datatake)}</DATATAKE_SENSING_START>
                <SENSING_ORBIT_NUMBER>{RELATIVE_ORBIT}</SENSING_ORBIT_NUMBER>
                <SENSING_ORBIT_DIRECTION>DESCENDING</SENSING_ORBIT_DIRECTION>
            </Datatake>
            <Query_Options completeSingleTile="true">
                <PRODUCT_FORMAT>SAFE_COMPACT</PRODUCT_FORMAT>
            </Query_Options>
            <Product_Organisation>
                <Granule_List>
                    <Granule datastripIdentifier="{ds_id}" granuleIdentifier="{tl_id}" imageFormat="JPEG2000">
{files}
                    </Granule>
                </Granule_List>
            </Product_Organisation>
        </Product_Info>
        <Product_Image_Characteristics>
            <Special_Values>
                <SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT>
                <SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX>
            </Special_Values>
            <Special_Values>
                <SPECIAL_VALUE_TEXT>SATURATED</SPECIAL_VALUE_TEXT>
                <SPECIAL_VALUE_INDEX>65535</SPECIAL_VALUE_INDEX>
            </Special_Values>
            <Image_Display_Order>
                <RED_CHANNEL>3</RED_CHANNEL>
                <GREEN_CHANNEL>2</GREEN_CHANNEL>
                <BLUE_CHANNEL>1</BLUE_CHANNEL>
            </Image_Display_Order>
{quant}
{offsets}
            <Reflectance_Conversion>
                <U>0.968</U>
            </Reflectance_Conversion>
            <Spectral_Information_List>
{spectral}
            </Spectral_Information_List>
            <REFERENCE_BAND>3</REFERENCE_BAND>
{scl}
        </Product_Image_Characteristics>
    </n1:General_Info>
    <n1:Geometric_Info>
        <Product_Footprint>
            <Product_Footprint>
                <Global_Footprint>
                    <EXT_POS_LIST>{footprint}</EXT_POS_LIST>
                </Global_Footprint>
            </Product_Footprint>
            <RASTER_CS_TYPE>POINT</RASTER_CS_TYPE>
            <PIXEL_ORIGIN>1</PIXEL_ORIGIN>
        </Product_Footprint>
        <Coordinate_Reference_System>
            <GEO_TABLES version="1">EPSG</GEO_TABLES>
            <HORIZONTAL_CS_TYPE>GEOGRAPHIC</HORIZONTAL_CS_TYPE>
        </Coordinate_Reference_System>
    </n1:Geometric_Info>
    <n1:Auxiliary_Data_Info>
        <PRODUCTION_DEM_TYPE>CopernicusDEM90</PRODUCTION_DEM_TYPE>
    </n1:Auxiliary_Data_Info>
    <n1:Quality_Indicators_Info>
        <Cloud_Coverage_Assessment>{cloud_cover:.6f}</Cloud_Coverage_Assessment>
        <Technical_Quality_Assessment>
            <DEGRADED_ANC_DATA_PERCENTAGE>0.0</DEGRADED_ANC_DATA_PERCENTAGE>
            <DEGRADED_MSI_DATA_PERCENTAGE>0</DEGRADED_MSI_DATA_PERCENTAGE>
        </Technical_Quality_Assessment>
{_quality_block(spec)}
        <Image_Content_QI>
{content_qi}
        </Image_Content_QI>
    </n1:Quality_Indicators_Info>
</n1:{tag}>
"""


def _tile_xml(spec: ProductSpec, rendered: Rendered) -> str:
    tag, ns = _NS_TL[spec.level]
    tile, a = spec.tile, spec.acquisition
    ds_id, tl_id = _ids(spec)
    sizes = "\n".join(
        f'      <Size resolution="{r}">\n        <NROWS>{tile.size_m // r}</NROWS>\n'
        f"        <NCOLS>{tile.size_m // r}</NCOLS>\n      </Size>"
        for r in (10, 20, 60)
    )
    geo = "\n".join(
        f'      <Geoposition resolution="{r}">\n        <ULX>{tile.ulx}</ULX>\n        <ULY>{tile.uly}</ULY>\n'
        f"        <XDIM>{r}</XDIM>\n        <YDIM>-{r}</YDIM>\n      </Geoposition>"
        for r in (10, 20, 60)
    )
    p = rendered.scl_percent
    cloudy = p.get(8, 0.0) + p.get(9, 0.0) + p.get(10, 0.0)
    content_qi = _content_qi(rendered, "      ") if spec.level == "L2A" else ""
    l1c_id = tl_id.replace("MSI_L2A", "MSI_L1C")
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<n1:{tag} xmlns:n1="{ns}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="{ns}">
  <n1:General_Info>
    <L1C_TILE_ID metadataLevel="Brief">{l1c_id}</L1C_TILE_ID>
    <TILE_ID metadataLevel="Brief">{tl_id}</TILE_ID>
    <DATASTRIP_ID metadataLevel="Standard">{ds_id}</DATASTRIP_ID>
    <DOWNLINK_PRIORITY metadataLevel="Standard">NOMINAL</DOWNLINK_PRIORITY>
    <SENSING_TIME metadataLevel="Standard">{_t(a.datatake, micro=True)}</SENSING_TIME>
  </n1:General_Info>
  <n1:Geometric_Info>
    <Tile_Geocoding metadataLevel="Brief">
      <HORIZONTAL_CS_NAME>WGS84 / UTM zone 33N</HORIZONTAL_CS_NAME>
      <HORIZONTAL_CS_CODE>EPSG:{EPSG}</HORIZONTAL_CS_CODE>
{sizes}
{geo}
    </Tile_Geocoding>
    <Tile_Angles metadataLevel="Standard">
      <Mean_Sun_Angle>
        <ZENITH_ANGLE unit="deg">{35.0 if a.season == "summer" else 68.0 if a.season == "winter" else 50.0}</ZENITH_ANGLE>
        <AZIMUTH_ANGLE unit="deg">155.0</AZIMUTH_ANGLE>
      </Mean_Sun_Angle>
    </Tile_Angles>
  </n1:Geometric_Info>
  <n1:Quality_Indicators_Info metadataLevel="Standard">
    <Image_Content_QI>
      <CLOUDY_PIXEL_PERCENTAGE>{cloudy:.6f}</CLOUDY_PIXEL_PERCENTAGE>
{content_qi}
    </Image_Content_QI>
  </n1:Quality_Indicators_Info>
</n1:{tag}>
"""


def _manifest(root: Path) -> str:
    """An XFDU manifest listing every file with its size and MD5, as ESA's manifest.safe does."""
    entries = []
    for i, f in enumerate(sorted(p for p in root.rglob("*") if p.is_file() and p.name != "manifest.safe")):
        rel = f.relative_to(root).as_posix()
        md5 = hashlib.md5(f.read_bytes()).hexdigest()
        entries.append(
            f'    <dataObject ID="obj{i}">\n      <byteStream mimeType="application/octet-stream" '
            f'size="{f.stat().st_size}">\n        <fileLocation locatorType="URL" href="./{escape(rel)}"/>\n'
            f'        <checksum checksumName="MD5">{md5}</checksum>\n      </byteStream>\n    </dataObject>'
        )
    body = "\n".join(entries)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<xfdu:XFDU xmlns:xfdu="urn:ccsds:schema:xfdu:1" version="esa/safe/sentinel/1.1/sentinel-2/msi">\n'
        f"  <dataObjectSection>\n{body}\n  </dataObjectSection>\n</xfdu:XFDU>\n"
    )


def zip_product(root: Path) -> Path:
    """Zip a SAFE folder deterministically (sorted entries, fixed timestamps) and remove the folder."""
    import shutil

    target = root.with_name(root.name.removesuffix(".SAFE") + ".zip")
    tmp = target.with_name(target.name + ".part")
    with zipfile.ZipFile(tmp, "w") as zf:
        for path in sorted(root.rglob("*")):
            arc = f"{root.name}/{path.relative_to(root).as_posix()}"
            if path.is_dir():
                info = zipfile.ZipInfo(arc + "/", date_time=_ZIP_TIME)
                info.external_attr = 0o40755 << 16
                zf.writestr(info, b"")
                continue
            info = zipfile.ZipInfo(arc, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_STORED if path.suffix == ".jp2" else zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    os.replace(tmp, target)
    shutil.rmtree(root)
    return target
